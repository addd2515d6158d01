# ViT-B/16: the cascade ViT-B 1x protocol's backbone and optimizer (drop path 0.2, img_size (672, 1092),
# layer decay 0.75, 16 images per iteration: the iBOT/Harmony README ViT-B command).
_base_ = ["./_base_mask_rcnn_vit_coco.py"]
total_batch_size = 16
model = dict(
    backbone=dict(drop_path_rate=0.2, img_size=(672, 1092))
)  # neck and head widths follow the backbone
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75))
_SAME = "harmony-bench: as cascade-mask-rcnn_vit-b_coco_1x.py"
sources = {
    "total_batch_size": f"{_SAME} (bytedance/ibot@da316d8 evaluation/README.md:L80-L87, 8 GPUs x 2)",
    "model.backbone.drop_path_rate": f"{_SAME} (drop_path_rate=0.2)",
    "model.backbone.img_size": f"{_SAME} ((672, 1092), resampled once at load and trained)",
    "optim_wrapper.paramwise_cfg": (
        f"{_SAME} (README layer_decay_rate=0.75); num_layers = the backbone's depth"
    ),
}
del _SAME
