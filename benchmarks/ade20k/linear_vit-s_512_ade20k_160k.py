# ViT-S/16: iBOT's configs/linear/vit_small_512_ade20k_160k.py as the file stands (no README command runs
# it): 8 GPUs x 2, lr 3e-5, out_with_norm at its default (False).  Harmony's copy is byte-identical.
_base_ = ["./_base_linear_vit_512_ade20k_160k.py"]
embed_dim = 384
model = dict(decode_head=dict(in_channels=[embed_dim] * 4, channels=4 * embed_dim))  # channels=1536
optim_wrapper = dict(optimizer=dict(lr=3e-5))  # lr=3e-5 (the same as the ViT-S UperNet file)
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/linear/vit_small_512_ade20k_160k.py"
sources = {
    "model.decode_head.channels": f"{_CFG}:L46 (channels=1536 = 4 x 384, the concatenated width)",
    "optim_wrapper.optimizer.lr": f"{_CFG}:L64 (lr=3e-5)",
}
del _CFG
