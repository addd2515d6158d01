# COCO Cascade Mask R-CNN on a registry ViT: the iBOT/Harmony protocol on mmdet 3.x (mmengine config).
# Source: iBOT / Harmony eval/object_detection/configs/cascade_rcnn/vit_{small,base}_giou_4conv1f_coco_3x.py
# (mmdet 2.x): ViT + in-backbone multi-scale deconvs, FPN (256 ch, 5 outs), three 4conv1fc bbox heads with
# SyncBN and GIoU loss (weight 10), DETR-style multi-scale training with a crop branch, AdamW lr 1e-4
# wd 0.05 with layer decay.  The schedule is the README's 12 epochs (steps 8, 11); the *_3x files are the
# configs' 36 epochs (steps 27, 33).  Batch, layer decay, drop path and img_size are set per size.
# `sources`: dotted mmengine path -> citation, merged through _base_ (see benchmarks/README.md).
_base_ = [
    "mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py",
    "mmdet::_base_/datasets/coco_instance.py",
    "mmdet::_base_/schedules/schedule_1x.py",
    "mmdet::_base_/default_runtime.py",
]
embed_dim = 768
norm_cfg = dict(type="SyncBN", requires_grad=True)
num_classes = 80


def _bbox_head(stds):  # one 4conv1fc cascade stage, GIoU on decoded boxes
    return dict(
        type="ConvFCBBoxHead",
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=num_classes,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=norm_cfg,
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=10.0),  # GIoU, weight 10
    )


model = dict(
    backbone=dict(
        _delete_=True,
        type="RegistryBackbone",
        backbone=None,
        checkpoint=None,
        out_indices=[3, 5, 7, 11],
        out_with_norm=False,  # iBOT register_backbone default; no detection config or command sets it
        drop_path_rate=0.1,
        img_size=(800, 1008),  # position-embedding grid trained (set per size)
    ),
    neck=[
        dict(type="Feature2Pyramid", embed_dim=embed_dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
        dict(type="FPN", in_channels=[embed_dim] * 4, out_channels=256, num_outs=5),
    ],
    roi_head=dict(
        bbox_head=[
            _bbox_head([0.1, 0.1, 0.2, 0.2]),  # the cascade's three IoU stages (0.5, 0.6, 0.7)
            _bbox_head([0.05, 0.05, 0.1, 0.1]),
            _bbox_head([0.033, 0.033, 0.067, 0.067]),
        ],
        mask_head=dict(num_classes=num_classes),
    ),
)
del _bbox_head

# DETR-style multi-scale training with a crop branch (iBOT/Swin cascade configs, AutoAugment policy)
train_scales = [(short, 1333) for short in range(480, 801, 32)]  # short side 480..800, max 1333
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="RandomChoice",
        transforms=[
            [dict(type="RandomChoiceResize", scales=train_scales, keep_ratio=True)],
            [
                dict(
                    type="RandomChoiceResize", scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True
                ),
                dict(
                    type="RandomCrop",
                    crop_type="absolute_range",
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),
                dict(type="RandomChoiceResize", scales=train_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type="PackDetInputs"),
]
# Images per iteration (set per size); harmony-bench sets train_dataloader.batch_size = total_batch_size /
# number of processes.
total_batch_size = 16
train_dataloader = dict(batch_size=total_batch_size, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),  # lr 1e-4, wd 0.05
    constructor="TimmLayerDecayOptimizerConstructor",
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75),  # set per size
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),  # README: 12 ep
]
train_cfg = dict(max_epochs=12)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))

_D = "bytedance/ibot@da316d8 evaluation/object_detection/"
_S = _D + "configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py"
sources = {
    "norm_cfg": (
        f"{_S}:L57 (SyncBN in the bbox heads); {_D}mmcv_custom/register_backbone.py:L76 (in the pyramid)"
    ),
    "model.data_preprocessor": (
        f"{_D}configs/_base_/datasets/coco_instance.py:L3-L4, L11 (ImageNet mean/std, pad to 32); "
        "harmony-bench: the card's mean/std (ImageNet's for iBOT/Harmony)"
    ),
    "model.backbone.out_indices": (
        f"{_S}:L33 (out_indices=(3, 5, 7, 11); a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.backbone.out_with_norm": (
        f"{_D}mmcv_custom/register_backbone.py:L46, L70-L71 (default False; no config or README sets it)"
    ),
    "model.neck": (
        f"{_D}mmcv_custom/register_backbone.py:L73-L87 (fpn1..fpn4 = mmseg Feature2Pyramid) and {_S}:L35-L39 "
        "(FPN, 256 channels, 5 outputs)"
    ),
    "model.roi_head.bbox_head": (
        f"{_S}:L41-L99 (three ConvFCBBoxHead 4conv1fc, SyncBN, GIoU loss weight 10, reg_decoded_bbox, stds "
        "0.1/0.05/0.033)"
    ),
    "train_dataloader.dataset.pipeline": f"{_S}:L105-L142 (flip 0.5; AutoAugment: multi-scale 480-800 x "
    "1333, "
    "or 400-600 resize + 384-600 crop + multi-scale)",
    "val_dataloader.dataset.pipeline": f"{_D}configs/_base_/datasets/coco_instance.py:L15-L29 (1333 x 800)",
    "optim_wrapper.optimizer": f"{_S}:L148 (AdamW lr 1e-4, betas (0.9, 0.999), weight_decay 0.05)",
    "param_scheduler": (
        f"{_D}configs/_base_/schedules/schedule_1x.py:L5-L10 (linear warm-up 500 iterations, ratio 0.001; "
        "steps) with bytedance/ibot@da316d8 evaluation/README.md:L75 (lr_config.step=8,11)"
    ),
    "train_cfg.max_epochs": "bytedance/ibot@da316d8 evaluation/README.md:L76 (runner.max_epochs=12)",
    "val_evaluator.metric": (
        "bbox and segm AP of the last model (bytedance/ibot@da316d8 run.sh:L419-L425, --eval bbox segm)"
    ),
    "default_hooks.checkpoint": f"{_D}configs/_base_/default_runtime.py:L1 (checkpoint every epoch)",
}
del _D, _S
