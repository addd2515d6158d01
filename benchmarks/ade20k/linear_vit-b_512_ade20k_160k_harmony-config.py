# ViT-B/16, preset `harmony-config`: Harmony's configs/linear/vit_base_512_ade20k_160k.py (byte-identical to
# iBOT's) as the file stands: 8 GPUs x 2, lr 7e-4, out_with_norm left at the backbone's default False.
_base_ = ["./linear_vit-b_512_ade20k_160k.py"]
total_batch_size = 16  # the config file: 8 GPUs x samples_per_gpu=2
model = dict(backbone=dict(out_with_norm=False))  # not set by the file: register_backbone's default
optim_wrapper = dict(optimizer=dict(lr=7e-4))  # the config file: lr=7e-4
_H = "MohammedSB/Harmony@848f7ac Harmony/eval/semantic_segmentation/"
_CFG = _H + "configs/linear/vit_base_512_ade20k_160k.py"
sources = {
    "total_batch_size": f"{_CFG}:L72-L73 (8 GPUs x samples_per_gpu=2)",
    "model.backbone.out_with_norm": (
        f"{_H}mmcv_custom/register_backbone.py:L24 (default False; the file sets none)"
    ),
    "optim_wrapper.optimizer.lr": f"{_CFG}:L64 (lr=7e-4)",
}
del _H, _CFG
