"""COCO detection and instance segmentation with (Cascade) Mask R-CNN through mmdetection 3.x."""
