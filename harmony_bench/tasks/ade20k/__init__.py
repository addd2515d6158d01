"""ADE20K semantic segmentation with UperNet through mmsegmentation 1.x (``run.py``)."""
