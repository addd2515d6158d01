# ADE20K frozen-backbone linear segmentation on a registry ViT: the iBOT/Harmony protocol on mmseg 1.x.
# Source of every number: iBOT's configs/linear/vit_{small,base,large}_512_ade20k_160k.py (Harmony ships
# byte-identical copies under Harmony/eval/semantic_segmentation/configs/linear/) and the README command
# that runs the ViT-B file.  They inherit the same dataset, runtime and 160k schedule files as the UperNet
# configs, so this file inherits ours and replaces the model and the optimizer.  Size files
# (linear_vit-{s,b,l}_...) set what differs per size.
#
# The head is one 1x1 convolution over the four block maps concatenated (FCNHead, num_convs=0,
# resize_concat): channels = 4 x the embed dim.  The backbone is frozen (FrozenRegistryBackbone: no
# gradients, eval mode, features under no_grad) and the optimizer holds only the head's parameters.

_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]  # data, pipelines, 160k schedule, runtime: the same
embed_dim = 768  # set per size
total_batch_size = 16  # 8 GPUs x samples_per_gpu=2 (the config files); the size files cite their command

model = dict(
    backbone=dict(
        type="FrozenRegistryBackbone",
        out_indices=[3, 5, 7, 11],  # iBOT out_indices for ViT-S/B
        out_with_norm=False,  # register_backbone default; the README's ViT-B command passes true
        drop_path_rate=0.0,  # frozen blocks run in eval mode: the files' 0.1 / 0.2 never acts
        img_size=512,  # position embeddings resampled once to the 32 x 32 grid of a 512 crop (frozen)
    ),
    neck=None,  # with_fpn=False: the block maps go straight to the head
    decode_head=dict(
        _delete_=True,
        type="FCNHead",
        in_channels=[embed_dim] * 4,
        in_index=[0, 1, 2, 3],
        input_transform="resize_concat",  # the four maps concatenated along channels
        channels=4 * embed_dim,  # num_convs=0 requires channels = the concatenated width
        num_convs=0,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=150,  # ADE20K SceneParsing classes
        norm_cfg=dict(type="SyncBN", requires_grad=True),  # the files' SyncBN; no layer uses it (num_convs=0)
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=None,  # the linear configs have none
)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=7e-4, betas=(0.9, 0.999), weight_decay=0.05),  # lr per size
    constructor="TrainableOnlyOptimWrapperConstructor",  # the head's parameters only
)

_IBOT = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/"
_ALL = _IBOT + "configs/linear/vit_{small,base,large}_512_ade20k_160k.py"  # the same line in the three files
_B = _IBOT + "configs/linear/vit_base_512_ade20k_160k.py"
_FREEZE = _IBOT + "mmcv_custom/register_backbone.py"
_MMCV = "open-mmlab/mmcv@4c01b02 (v1.7.2) mmcv/runner/hooks/lr_updater.py"
sources = {
    "crop_size": f"{_ALL}:L20 (crop_size = (512, 512))",
    "norm_cfg": f"{_ALL}:L23 (SyncBN; no layer of the linear head uses it: num_convs=0, concat_input False)",
    "total_batch_size": f"{_ALL}:L72-L73 (8 GPUs x samples_per_gpu=2)",
    "model.backbone": (
        f"{_ALL}:L38 (frozen_stages = the depth) as {_FREEZE}:L73-L98 applies it: every parameter without "
        "gradient, patch embed, blocks and final norm put in eval mode on every train(); harmony-bench: "
        "features under no_grad (no backbone backward at all)"
    ),
    "model.backbone.out_indices": (
        f"{_ALL}:L39 (ViT-S/B out_indices=[3, 5, 7, 11]; a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.backbone.out_with_norm": (
        f"{_FREEZE}:L24, L37-L38 (default False: maps without the final norm; the files set none)"
    ),
    "model.backbone.drop_path_rate": (
        f"{_ALL}:L36 (drop_path_rate=0.1, ViT-L 0.2) never acts: {_FREEZE}:L95-L96 keeps every frozen block "
        "in eval mode; 0.0 is the same network"
    ),
    "model.backbone.img_size": (
        f"{_ALL}:L29 (img_size=[512]); the checkpoint grid is resampled once to 32 x 32: "
        f"{_IBOT}mmcv_custom/checkpoint.py:L436-L457"
    ),
    "model.neck": f"{_ALL}:L37 (with_fpn=False: no pyramid, {_FREEZE}:L69-L71)",
    "model.decode_head": (
        f"{_ALL}:L41-L54 (FCNHead over in_index [0, 1, 2, 3], input_transform resize_concat, num_convs=0, "
        "concat_input False, dropout 0, CE weight 1.0)"
    ),
    "model.decode_head.channels": f"{_B}:L46 (channels=3072 = 4 x 768, the concatenated width)",
    "model.auxiliary_head": f"{_ALL}:L41-L55 (a decode head only)",
    "model.test_cfg": f"{_ALL}:L55 (slide, 512 window, stride 341)",
    "optim_wrapper.optimizer": f"{_ALL}:L64 (AdamW, betas (0.9, 0.999), weight_decay 0.05; no paramwise_cfg)",
    "optim_wrapper.optimizer.lr": f"{_B}:L64 (lr=7e-4)",
    "optim_wrapper.constructor": (
        f"harmony-bench: only parameters that require gradients reach the optimizer (upstream passes all, "
        f"the frozen ones without gradients: {_FREEZE}:L78-L98); the same updates"
    ),
    "param_scheduler": (
        f"{_ALL}:L66-L70 (poly, power 1.0, min_lr 0, linear warm-up 1500 iterations, ratio 1e-6) as mmcv 1.x "
        f"runs it: {_MMCV}:L244-L252 (poly over runner.max_iters), L87-L96 and L140-L150 (warm-up factor "
        "multiplies the poly lr)"
    ),
}
del _IBOT, _ALL, _B, _FREEZE, _MMCV
