# ADE20K UperNet on a registry ViT: the iBOT/Harmony protocol on mmseg 1.x (mmengine config).
# Source of every number: iBOT / Harmony eval/semantic_segmentation/configs/upernet/
# vit_{small,base}_512_ade20k_160k.py and its _base_ files (mmseg 0.x), and the README commands that run
# them.  Size files (upernet_vit-{s,b,l}_...) set what differs per size.
# harmony-bench fills in model.backbone.backbone/checkpoint, data roots and work_dir at run time.
#
# `sources` maps dotted mmengine paths to their citation (a key covers the paths below it unless a longer
# key has its own entry).  mmengine merges it through `_base_` like any dict, so a size file's entry
# replaces the base's; harmony-bench pops it before the Runner is built and prints it in
# `harmony-bench protocol show` and benchmarks/PROTOCOLS.md.

crop_size = (512, 512)  # 512x512 crops (vit_*_512_ade20k_160k.py)
num_classes = 150  # ADE20K SceneParsing classes; label 0 = "other" is ignored (reduce_zero_label)
norm_cfg = dict(type="SyncBN", requires_grad=True)  # iBOT: SyncBN in the neck and both heads
embed_dim = 768  # set per size
# 16 images per iteration: 8 GPUs x 2 (the configs' samples_per_gpu=2); the size files cite their command.
# harmony-bench sets train_dataloader.batch_size = total_batch_size / number of processes.
total_batch_size = 16

data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],  # the card's mean/std replace these at run time
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="RegistryBackbone",
        backbone=None,  # card name, filled in by harmony-bench
        checkpoint=None,
        out_indices=[3, 5, 7, 11],  # iBOT out_indices for ViT-S/B
        out_with_norm=False,  # register_backbone default; the README commands (S, B files) pass true
        drop_path_rate=0.1,  # iBOT: drop_path_rate=0.1
        img_size=512,  # position embeddings resampled once to the 32 x 32 grid of a 512 crop, then trained
    ),
    # iBOT puts fpn1..fpn4 inside its backbone: 4x = deconv-BN-GELU-deconv, 2x = deconv, 1x, 0.5x = maxpool;
    # mmseg 1.x's Feature2Pyramid is the same four ops.
    neck=dict(type="Feature2Pyramid", embed_dim=embed_dim, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type="UPerHead",
        in_channels=[embed_dim] * 4,
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),  # iBOT: pool_scales=(1, 2, 3, 6)
        channels=embed_dim,  # iBOT: channels = embed dim (384 S, 768 B)
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type="FCNHead",
        in_channels=embed_dim,
        in_index=2,  # iBOT: auxiliary FCN on the third pyramid level
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),  # aux weight 0.4
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),  # slide 512, stride 341
)

dataset_type = "ADE20KDataset"
data_root = None  # .../ADEChallengeData2016, filled in by harmony-bench
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),  # img_scale, ratio
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),  # cat_max_ratio=0.75
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),  # single scale (2048, 512)
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=total_batch_size,  # per process: total_batch_size / WORLD_SIZE, set at run time
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="PerClassIoUMetric", iou_metrics=["mIoU"])  # mIoU, mAcc, aAcc + per class
test_evaluator = val_evaluator

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.05),  # lr per size; wd 0.05
    constructor="TimmLayerDecayOptimizerConstructor",
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65),  # per size
)
# mmcv 1.x poly over all 160k iterations, times the linear warm-up factor for the first 1500 (closed form)
param_scheduler = [
    dict(
        type="MMCV1PolyLR",
        power=1.0,
        min_lr=0.0,
        warmup_iters=1500,
        warmup_ratio=1e-6,
        by_epoch=False,
        begin=0,
        end=160000,  # = train_cfg.max_iters: mmcv's poly horizon is the run's length
    )
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=160000, val_interval=64000)  # 160k iters, eval 64k
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_scope = "mmseg"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # every 16k (upstream: 64k) so that a preempted run loses at most 10% of its iterations
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=16000, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False

_IBOT = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/"
_S = _IBOT + "configs/upernet/vit_small_512_ade20k_160k.py"
_MODEL = _IBOT + "configs/_base_/models/upernet.py"
_DATA = _IBOT + "configs/_base_/datasets/ade20k.py"
_SCHED = _IBOT + "configs/_base_/schedules/schedule_160k.py"
_MMCV = "open-mmlab/mmcv@4c01b02 (v1.7.2) mmcv/runner/hooks/lr_updater.py"
sources = {
    "crop_size": f"{_S}:L20 (crop_size = (512, 512))",
    "norm_cfg": f"{_MODEL}:L16 (SyncBN in the pyramid and both heads)",
    "model.data_preprocessor": (
        f"{_DATA}:L4-L5 (ImageNet mean/std); harmony-bench: the card's mean/std (ImageNet's for iBOT/Harmony)"
    ),
    "model.backbone.out_indices": (
        f"{_S}:L34 (out_indices=[3, 5, 7, 11]; a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "total_batch_size": f"{_S}:L64-L65 (8 GPUs x samples_per_gpu=2)",
    "model.backbone.out_with_norm": (
        f"{_IBOT}mmcv_custom/register_backbone.py:L24, L37-L38 (default False: maps without the final norm)"
    ),
    "model.backbone.drop_path_rate": f"{_S}:L33 (drop_path_rate=0.1)",
    "model.backbone.img_size": (
        f"{_S}:L26 (img_size=[512]); the checkpoint grid is resampled once to 32 x 32 and trained: "
        f"{_IBOT}mmcv_custom/checkpoint.py:L436-L457"
    ),
    "model.neck": (
        f"{_IBOT}mmcv_custom/register_backbone.py:L40-L54 (fpn1: deconv-SyncBN-GELU-deconv, fpn2: deconv, "
        "fpn3: identity, fpn4: max-pool) = mmseg 1.x Feature2Pyramid"
    ),
    "model.decode_head": f"{_MODEL}:L29-L40 (UPerHead, pool_scales (1, 2, 3, 6), dropout 0.1, CE weight 1.0)",
    "model.decode_head.channels": f"{_S}:L39 (channels = the embed dim)",
    "model.auxiliary_head": f"{_MODEL}:L41-L53 (FCNHead on in_index 2, 256 channels, 1 conv, CE weight 0.4)",
    "model.test_cfg": f"{_S}:L45 (slide, 512 window, stride 341)",
    "train_dataloader.dataset.pipeline": (
        f"{_DATA}:L7-L18 (resize to (2048, 512) x 0.5-2.0, 512 crop with cat_max_ratio 0.75, flip 0.5, "
        "photometric distortion)"
    ),
    "val_dataloader.dataset.pipeline": f"{_DATA}:L19-L33 (single scale (2048, 512), keep ratio)",
    "optim_wrapper.optimizer": f"{_S}:L54 (AdamW, betas (0.9, 0.999), weight_decay 0.05)",
    "param_scheduler": (
        f"{_S}:L58-L62 (poly, power 1.0, min_lr 0, linear warm-up 1500 iterations, ratio 1e-6) as mmcv 1.x "
        f"runs it: {_MMCV}:L244-L252 (poly over runner.max_iters), L87-L96 and L140-L150 (warm-up factor "
        "multiplies the poly lr)"
    ),
    "train_cfg.max_iters": f"{_SCHED}:L7 (max_iters=160000)",
    "train_cfg.val_interval": (
        f"{_SCHED}:L9 (evaluation interval=64000); the final number is the 160k model's"
    ),
    "default_hooks.checkpoint.interval": (
        f"harmony-bench: every 16000 iterations for resume ({_SCHED}:L8 saves every 64000); no effect on "
        "numbers"
    ),
    "val_evaluator": (
        "mIoU over the 150 classes (bytedance/ibot@da316d8 run.sh:L389-L397, test.py --eval mIoU)"
    ),
}
del _IBOT, _S, _MODEL, _DATA, _SCHED, _MMCV
