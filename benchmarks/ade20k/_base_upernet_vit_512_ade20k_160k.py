# ADE20K UperNet on a registry ViT: the iBOT/Harmony protocol on mmseg 1.x (mmengine config).
# Source of every number: iBOT / Harmony eval/semantic_segmentation/configs/upernet/
# vit_{small,base}_512_ade20k_160k.py and its _base_ files (mmseg 0.x), as summarised in
# shared/reference/harmony.md §4.  Size files (upernet_vit-{s,b,l}_...) set what differs per size.
# harmony-bench fills in model.backbone.backbone/checkpoint, data roots and work_dir at run time.

crop_size = (512, 512)  # 512x512 crops (vit_*_512_ade20k_160k.py)
num_classes = 150  # ADE20K SceneParsing classes; label 0 = "other" is ignored (reduce_zero_label)
norm_cfg = dict(type="SyncBN", requires_grad=True)  # iBOT: SyncBN in the neck and both heads
embed_dim = 768  # set per size
# 16 images per iteration: 4 GPUs x 4 (Harmony README command) = 8 x 2 (iBOT configs' samples_per_gpu=2).
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
        out_with_norm=False,  # iBOT config default; the README's ViT-B run passes out_with_norm=true
        drop_path_rate=0.1,  # iBOT: drop_path_rate=0.1
        img_size=512,
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
param_scheduler = [
    dict(
        type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500
    ),  # warmup 1500 iters, ratio 1e-6
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),  # poly, power 1.0
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=160000, val_interval=16000)  # 160k iters, eval 16k
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_scope = "mmseg"
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
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
