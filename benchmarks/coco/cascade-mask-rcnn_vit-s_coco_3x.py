# ViT-S/16, 36 epochs (steps 27, 33) as iBOT's vit_small_giou_4conv1f_coco_3x.py stands: 8 GPUs x 2 images,
# layer decay 0.75 (the 1x file carries the README's 12-epoch command: 32 images, 0.8).
_base_ = ["./cascade-mask-rcnn_vit-s_coco_1x.py"]
total_batch_size = 16  # coco_instance.py samples_per_gpu=2 x 8 GPUs
train_cfg = dict(max_epochs=36)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
_D = "bytedance/ibot@da316d8 evaluation/object_detection/configs/"
_CFG = _D + "cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py"
sources = {
    "total_batch_size": (
        f"{_D}_base_/datasets/coco_instance.py:L31 (samples_per_gpu=2) x 8 GPUs (run.sh coco_det)"
    ),
    "train_cfg.max_epochs": f"{_CFG}:L153 (max_epochs=36)",
    "param_scheduler": (
        f"{_D}_base_/schedules/schedule_1x.py:L5-L10 (warm-up) and {_CFG}:L152 (step=[27, 33])"
    ),
    "optim_wrapper.paramwise_cfg": (
        f"{_CFG}:L148-L150 (layer_decay_rate=0.75); num_layers = the backbone's depth"
    ),
}
del _D, _CFG
