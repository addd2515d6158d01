# ViT-B/16, 36 epochs (steps 27, 33) and layer decay 0.65 as in iBOT's vit_base_giou_4conv1f_coco_3x.py.
_base_ = ["./cascade-mask-rcnn_vit-b_coco_1x.py"]
train_cfg = dict(max_epochs=36)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
