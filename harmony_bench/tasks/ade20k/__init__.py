"""ADE20K semantic segmentation via mmsegmentation 1.x: UperNet (``upernet.py``), linear (``linear.py``)."""
