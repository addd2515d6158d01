# COCO Mask R-CNN + FPN on a registry ViT, mmdet 3.x (mmengine config).  The detector, data pipeline
# and 1x schedule are mmdet's own base files; what changes for a plain ViT is the backbone (block
# outputs 3/5/7/11 through iBOT's pyramid: 4x deconv-BN-GELU-deconv, 2x deconv, identity, max-pool,
# mmseg's Feature2Pyramid) and the optimizer (AdamW with layer decay, as every ViT detector uses).
# Sources: shared/reference/harmony.md §4 (iBOT/Harmony object_detection configs).
# harmony-bench fills in the backbone, data root, class names and work_dir at run time.
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
        drop_path_rate=0.1,
    ),
    neck=[
        dict(type="Feature2Pyramid", embed_dim=embed_dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
        dict(type="FPN", in_channels=[embed_dim] * 4, out_channels=256, num_outs=5),  # FPN 256 ch, 5 levels
    ],
)
# 16 images per iteration: 2 per GPU x 8 GPUs (Harmony README: data.samples_per_gpu=2, 8 GPUs).
# harmony-bench sets train_dataloader.batch_size = total_batch_size / number of processes.
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
