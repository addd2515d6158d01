# ViT-B/16, 12 epochs: the iBOT/Harmony README command for ViT-B/16 (8 GPUs x 2 images, layer decay 0.75)
# on vit_base_giou_4conv1f_coco_3x.py (drop path 0.2, img_size (672, 1092) from its _base_ model file).
_base_ = ["./_base_cascade_mask_rcnn_vit_coco.py"]
total_batch_size = 16  # README: 8 GPUs x data.samples_per_gpu=2
model = dict(
    backbone=dict(drop_path_rate=0.2, img_size=(672, 1092))
)  # neck and head widths follow the backbone
optim_wrapper = dict(
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75)
)  # README: layer_decay_rate=0.75
_README = (
    "bytedance/ibot@da316d8 evaluation/README.md:L80-L87 (./run.sh coco_det $JOB_NAME vit_base teacher 8"
)
_HARMONY = "= MohammedSB/Harmony@848f7ac README.md:L110-L124"
_D = "bytedance/ibot@da316d8 evaluation/object_detection/configs/"
_CFG = _D + "cascade_rcnn/vit_base_giou_4conv1f_coco_3x.py"
sources = {  # the base cites vit_small_...py; what the ViT-B file (or its _base_ model) says:
    "model.backbone.out_indices": (
        f"{_D}_base_/models/cascade_mask_rcnn_vit_fpn.py:L15 (out_indices=(3, 5, 7, 11); a backbone with "
        "fewer blocks: evenly spaced ones, harmony-bench)"
    ),
    "model.neck": (
        "bytedance/ibot@da316d8 evaluation/object_detection/mmcv_custom/register_backbone.py:L73-L87 "
        "(fpn1..fpn4 = "
        f"mmseg Feature2Pyramid) and {_D}_base_/models/cascade_mask_rcnn_vit_fpn.py:L17-L21, {_CFG}:L28 "
        "(FPN, 256 "
        "channels, 5 outputs)"
    ),
    "model.roi_head.bbox_head": (
        f"{_CFG}:L29-L88 (three ConvFCBBoxHead 4conv1fc, SyncBN, GIoU loss weight 10, reg_decoded_bbox, stds "
        "0.1/0.05/0.033)"
    ),
    "train_dataloader.dataset.pipeline": f"{_CFG}:L94-L131 (flip 0.5; AutoAugment: multi-scale 480-800 x "
    "1333, "
    "or 400-600 resize + 384-600 crop + multi-scale)",
    "optim_wrapper.optimizer": f"{_CFG}:L137 (AdamW lr 1e-4, betas (0.9, 0.999), weight_decay 0.05)",
    "total_batch_size": f"{_README} data.samples_per_gpu=2) {_HARMONY}: 8 GPUs x 2",
    "model.backbone.drop_path_rate": (
        f"{_D}cascade_rcnn/vit_base_giou_4conv1f_coco_3x.py:L26 (drop_path_rate=0.2)"
    ),
    "model.backbone.img_size": (
        f"{_D}_base_/models/cascade_mask_rcnn_vit_fpn.py:L7 (img_size=[672, 1092]; the ViT-B file sets "
        "none): the "
        "checkpoint grid is resampled once to 42 x 68 and trained "
        "(bytedance/ibot@da316d8 evaluation/object_detection/mmcv_custom/checkpoint.py:L439-L462)"
    ),
    "optim_wrapper.paramwise_cfg": (
        f"{_README} optimizer.paramwise_cfg.layer_decay_rate=0.75) {_HARMONY}; num_layers = the "
        "backbone's depth"
    ),
}
del _README, _HARMONY, _D, _CFG
