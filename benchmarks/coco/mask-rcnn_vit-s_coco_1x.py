# ViT-S/16 (iBOT vit_small_*: drop path 0.1, layer decay 0.75).
_base_ = ["./_base_mask_rcnn_vit_coco.py"]
model = dict(backbone=dict(drop_path_rate=0.1))  # neck and head widths follow the backbone
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75))
