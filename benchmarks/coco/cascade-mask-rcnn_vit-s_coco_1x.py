# ViT-S/16, 12 epochs: iBOT's README command for ViT-S/16 (8 GPUs x 4 images, layer decay 0.8) on
# vit_small_giou_4conv1f_coco_3x.py (drop path 0.1, img_size (800, 1008)).
_base_ = ["./_base_cascade_mask_rcnn_vit_coco.py"]
total_batch_size = 32  # README: 8 GPUs x data.samples_per_gpu=4
model = dict(
    backbone=dict(drop_path_rate=0.1, img_size=(800, 1008))
)  # neck and head widths follow the backbone
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.8))  # README: layer_decay_rate=0.8
_README = (
    "bytedance/ibot@da316d8 evaluation/README.md:L71-L78 (./run.sh coco_det $JOB_NAME vit_small teacher 8"
)
_CFG = (
    "bytedance/ibot@da316d8 "
    "evaluation/object_detection/configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py"
)
sources = {
    "total_batch_size": f"{_README} data.samples_per_gpu=4): 8 GPUs x 4",
    "model.backbone.drop_path_rate": f"{_CFG}:L32 (drop_path_rate=0.1)",
    "model.backbone.img_size": (
        f"{_CFG}:L20, L25 (img_size = crop_size = (800, 1008)): the checkpoint grid is resampled once to "
        "50 x 63 "
        "and trained (bytedance/ibot@da316d8 evaluation/object_detection/mmcv_custom/checkpoint.py:L439-L462)"
    ),
    "optim_wrapper.paramwise_cfg": (
        f"{_README} optimizer.paramwise_cfg.layer_decay_rate=0.8); num_layers = the backbone's depth"
    ),
}
del _README, _CFG
