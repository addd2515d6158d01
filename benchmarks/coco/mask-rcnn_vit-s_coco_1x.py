# ViT-S/16: the cascade ViT-S 1x protocol's backbone and optimizer (drop path 0.1, img_size (800, 1008),
# layer decay 0.8, 32 images per iteration: iBOT's README ViT-S command).
_base_ = ["./_base_mask_rcnn_vit_coco.py"]
total_batch_size = 32
model = dict(
    backbone=dict(drop_path_rate=0.1, img_size=(800, 1008))
)  # neck and head widths follow the backbone
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.8))
_SAME = "harmony-bench: as cascade-mask-rcnn_vit-s_coco_1x.py"
sources = {
    "total_batch_size": f"{_SAME} (bytedance/ibot@da316d8 evaluation/README.md:L71-L78, 8 GPUs x 4)",
    "model.backbone.drop_path_rate": f"{_SAME} (drop_path_rate=0.1)",
    "model.backbone.img_size": f"{_SAME} ((800, 1008), resampled once at load and trained)",
    "optim_wrapper.paramwise_cfg": (
        f"{_SAME} (README layer_decay_rate=0.8); num_layers = the backbone's depth"
    ),
}
del _SAME
