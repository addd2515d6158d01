# ViT-B/16 (iBOT vit_base_*: drop path 0.2; layer decay 0.75 as the README's 12-epoch run passes it).
_base_ = ["./_base_mask_rcnn_vit_coco.py"]
model = dict(backbone=dict(drop_path_rate=0.2))  # neck and head widths follow the backbone
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75))
