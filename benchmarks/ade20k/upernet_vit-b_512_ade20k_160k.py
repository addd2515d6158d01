# ViT-B/16 `paper`: iBOT vit_base_512_ade20k_160k.py as iBOT's README runs it for its published 50.0 mIoU
# (8 GPUs x 2, out_with_norm, lr 8e-5).  Presets harmony-readme / harmony-config are the other two sources.
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 768
total_batch_size = 16  # README: 8 GPUs x data.samples_per_gpu=2
model = dict(
    backbone=dict(out_with_norm=True),  # README: model.backbone.out_with_norm=true
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=8e-5),  # README: optimizer.lr=8e-5 (the config file says 7e-4)
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65),  # iBOT ViT-B: layer decay 0.65
)
_README = (
    "bytedance/ibot@da316d8 evaluation/README.md:L107-L113 (./run.sh ade20k_seg $JOB_NAME vit_base teacher 8"
)
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/upernet/vit_base_512_ade20k_160k.py"
sources = {  # the base cites vit_small_...py; the ViT-B file has every value on the same line
    "crop_size": f"{_CFG}:L20 (crop_size = (512, 512))",
    "model.backbone.out_indices": (
        f"{_CFG}:L34 (out_indices=[3, 5, 7, 11]; a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.backbone.drop_path_rate": f"{_CFG}:L33 (drop_path_rate=0.1)",
    "model.backbone.img_size": (
        f"{_CFG}:L26 (img_size=[512]); the checkpoint grid is resampled once to 32 x 32 and trained: "
        "bytedance/ibot@da316d8 evaluation/semantic_segmentation/mmcv_custom/checkpoint.py:L436-L457"
    ),
    "model.decode_head.channels": f"{_CFG}:L39 (channels = the embed dim)",
    "model.test_cfg": f"{_CFG}:L45 (slide, 512 window, stride 341)",
    "optim_wrapper.optimizer": f"{_CFG}:L54 (AdamW, betas (0.9, 0.999), weight_decay 0.05)",
    "param_scheduler": (
        f"{_CFG}:L58-L62 (poly, power 1.0, min_lr 0, linear warm-up 1500 iterations, ratio 1e-6) as mmcv 1.x "
        "runs it: open-mmlab/mmcv@4c01b02 (v1.7.2) mmcv/runner/hooks/lr_updater.py:L244-L252, L87-L96, "
        "L140-L150"
    ),
    "total_batch_size": f"{_README} data.samples_per_gpu=2): 8 GPUs x 2",
    "model.backbone.out_with_norm": f"{_README} model.backbone.out_with_norm=true)",
    "optim_wrapper.optimizer.lr": f"{_README} optimizer.lr=8e-5), overriding {_CFG}:L54 (7e-4)",
    "optim_wrapper.paramwise_cfg": (
        f"{_CFG}:L55-L56 (LayerDecayOptimizerConstructor, layer_decay_rate=0.65); num_layers = the "
        "backbone's depth"
    ),
}
del _README, _CFG
