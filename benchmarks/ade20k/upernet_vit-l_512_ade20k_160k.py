# ViT-L/16: Harmony eval/semantic_segmentation/configs/upernet/vit_large_512_ade20k_160k.py (iBOT's file of
# the same name but layer decay 0.95): blocks 7/11/15/23, drop path 0.2, lr 2e-5, layer decay 0.65 over 24
# layers, 8 GPUs x 2 = 16, out_with_norm at its default (False).  Neither README has a ViT-L command.
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 1024
model = dict(
    backbone=dict(out_indices=[7, 11, 15, 23], drop_path_rate=0.2),  # out_indices, drop_path_rate=0.2
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),  # channels=1024
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=2e-5),  # lr=2e-5
    paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.65),  # num_layers=24, layer_decay_rate=0.65
)
_CFG = (
    "MohammedSB/Harmony@848f7ac "
    "Harmony/eval/semantic_segmentation/configs/upernet/vit_large_512_ade20k_160k.py"
)
sources = {
    "crop_size": f"{_CFG}:L20 (crop_size = (512, 512))",
    "param_scheduler": (
        f"{_CFG}:L58-L62 (poly, power 1.0, min_lr 0, linear warm-up 1500 iterations, ratio 1e-6) as mmcv 1.x "
        "runs it: open-mmlab/mmcv@4c01b02 (v1.7.2) mmcv/runner/hooks/lr_updater.py:L244-L252, L87-L96, "
        "L140-L150"
    ),
    "total_batch_size": f"{_CFG}:L64-L65 (8 GPUs x samples_per_gpu=2)",
    "model.backbone.out_indices": (
        f"{_CFG}:L34 (out_indices=[7, 11, 15, 23]; a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.backbone.drop_path_rate": f"{_CFG}:L33 (drop_path_rate=0.2)",
    "model.backbone.img_size": f"{_CFG}:L26 (img_size=[512])",
    "model.decode_head.channels": f"{_CFG}:L39 (channels=1024)",
    "model.test_cfg": f"{_CFG}:L45 (slide, 512 window, stride 341)",
    "optim_wrapper.optimizer": f"{_CFG}:L54 (AdamW, betas (0.9, 0.999), weight_decay 0.05)",
    "optim_wrapper.optimizer.lr": f"{_CFG}:L54 (lr=2e-5)",
    "optim_wrapper.paramwise_cfg": (
        f"{_CFG}:L55-L56 (num_layers=24, layer_decay_rate=0.65; bytedance/ibot@da316d8's file of the same "
        "name "
        "says 0.95)"
    ),
}
del _CFG
