# ViT-L/16: iBOT's configs/linear/vit_large_512_ade20k_160k.py (Harmony's copy is byte-identical), no README
# command: blocks 7/11/15/23, lr 2e-5, 8 GPUs x 2, out_with_norm at its default (False).
# The file's head widths are an upstream bug: in_channels=[512] * 4, channels=2048 for 1024-wide maps.
# mmseg's FCNHead accepts them (num_convs=0 only checks sum(in_channels) == channels) and the 1x1 conv then
# fails on the first batch (2048 input channels expected, 4096 given), so the file never ran and no number
# depends on it.  Here the head takes what ViT-L gives: 4 x 1024 in, channels 4096 (as the same repo's
# vit_large_640_ade20k_160k.py has it).
_base_ = ["./_base_linear_vit_512_ade20k_160k.py"]
embed_dim = 1024
model = dict(
    backbone=dict(out_indices=[7, 11, 15, 23]),  # out_indices
    decode_head=dict(in_channels=[embed_dim] * 4, channels=4 * embed_dim),  # fixed widths (see above)
)
optim_wrapper = dict(optimizer=dict(lr=2e-5))  # lr=2e-5
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/linear/vit_large_512_ade20k_160k.py"
_640 = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/linear/vit_large_640_ade20k_160k.py"
sources = {
    "model.backbone.out_indices": (
        f"{_CFG}:L39 (out_indices=[7, 11, 15, 23]; a backbone with fewer blocks: evenly spaced ones, "
        "harmony-bench)"
    ),
    "model.decode_head.in_channels": (
        f"harmony-bench fix of {_CFG}:L43 (in_channels=[512] * 4 for 1024-wide ViT-L maps: the 1x1 conv "
        f"fails on the first batch); [1024] * 4 as {_640}:L44"
    ),
    "model.decode_head.channels": (
        f"harmony-bench fix of {_CFG}:L46 (channels=2048); 4096 = 4 x 1024 as {_640}:L47"
    ),
    "optim_wrapper.optimizer.lr": f"{_CFG}:L64 (lr=2e-5)",
}
del _CFG, _640
