"""Pretraining data: image-caption sources, the multi-crop augmentation, image and text masks."""
