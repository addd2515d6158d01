# COCO Mask R-CNN + FPN on a registry ViT, mmdet 3.x (mmengine config).  The detector, data pipeline
# and 1x schedule are mmdet's own base files; what changes for a plain ViT is the backbone (block
# outputs 3/5/7/11 through iBOT's pyramid: 4x deconv-BN-GELU-deconv, 2x deconv, identity, max-pool,
# mmseg's Feature2Pyramid) and the optimizer (AdamW with layer decay, as every ViT detector uses).
# Backbone, pyramid, optimizer, batch and img_size are the cascade protocol's of the same size
# (cascade-mask-rcnn_vit-{s,b}_coco_1x.py); this detector itself has no iBOT/Harmony source.
# harmony-bench fills in the backbone, data root, class names and work_dir at run time.
# `sources`: dotted mmengine path -> citation, merged through _base_ (see benchmarks/README.md).
_base_ = [
    "mmdet::_base_/models/mask-rcnn_r50_fpn.py",
    "mmdet::_base_/datasets/coco_instance.py",
    "mmdet::_base_/schedules/schedule_1x.py",  # 12 epochs, steps at 8 and 11, 500-iter warm-up
    "mmdet::_base_/default_runtime.py",
]
embed_dim = 768  # set per size
norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type="RegistryBackbone",
        backbone=None,
        checkpoint=None,
        out_indices=[3, 5, 7, 11],  # iBOT out_indices for ViT-S/B
        out_with_norm=False,  # iBOT register_backbone default; no detection config or command sets it
        drop_path_rate=0.1,
        img_size=(800, 1008),  # position-embedding grid trained (set per size)
    ),
    neck=[
        dict(type="Feature2Pyramid", embed_dim=embed_dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
        dict(type="FPN", in_channels=[embed_dim] * 4, out_channels=256, num_outs=5),  # FPN 256 ch, 5 levels
    ],
)
# Images per iteration (set per size); harmony-bench sets train_dataloader.batch_size = total_batch_size /
# number of processes.
total_batch_size = 16
train_dataloader = dict(batch_size=total_batch_size)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),  # iBOT: lr 1e-4, wd 0.05
    constructor="TimmLayerDecayOptimizerConstructor",
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.75),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))

_D = "bytedance/ibot@da316d8 evaluation/object_detection/"
_S = _D + "configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py"
_MM = "mmdet 3.3.0 configs/_base_/"
sources = {
    "norm_cfg": f"{_D}mmcv_custom/register_backbone.py:L76 (SyncBN in the pyramid)",
    "model.data_preprocessor": f"{_MM}models/mask-rcnn_r50_fpn.py; harmony-bench: the card's mean/std",
    "model.backbone.out_indices": (
        f"{_S}:L33 (out_indices=(3, 5, 7, 11); a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.backbone.out_with_norm": f"{_D}mmcv_custom/register_backbone.py:L46 (default False)",
    "model.neck": (
        f"{_D}mmcv_custom/register_backbone.py:L73-L87 (fpn1..fpn4 = mmseg Feature2Pyramid) and {_S}:L35-L39 "
        "(FPN, 256 channels, 5 outputs)"
    ),
    "model.roi_head": (
        f"{_MM}models/mask-rcnn_r50_fpn.py (standard Mask R-CNN: Shared2FCBBoxHead, FCNMaskHead)"
    ),
    "train_dataloader.dataset.pipeline": f"{_MM}datasets/coco_instance.py (Resize 1333 x 800, flip 0.5)",
    "val_dataloader.dataset.pipeline": f"{_MM}datasets/coco_instance.py (Resize 1333 x 800)",
    "optim_wrapper.optimizer": f"the cascade protocol's: {_S}:L148 (AdamW lr 1e-4, weight_decay 0.05)",
    "param_scheduler": (
        f"{_MM}schedules/schedule_1x.py (linear warm-up 500 iterations, ratio 0.001; steps 8, 11)"
    ),
    "train_cfg.max_epochs": f"{_MM}schedules/schedule_1x.py (12 epochs)",
    "val_evaluator.metric": "bbox and segm AP of the last model (mmdet CocoMetric)",
    "default_hooks.checkpoint": "harmony-bench: every epoch, the last one kept (resume)",
}
del _D, _S, _MM
