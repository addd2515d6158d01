# ViT-B/16 `paper`: iBOT's configs/linear/vit_base_512_ade20k_160k.py as iBOT's README runs it (4 GPUs x 4,
# out_with_norm, lr 8e-4).  Preset `harmony-config` runs the file as it stands (lr 7e-4, no out_with_norm).
_base_ = ["./_base_linear_vit_512_ade20k_160k.py"]
embed_dim = 768
total_batch_size = 16  # README: 4 GPUs x data.samples_per_gpu=4
model = dict(
    backbone=dict(out_with_norm=True),  # README: model.backbone.out_with_norm=true
    decode_head=dict(in_channels=[embed_dim] * 4, channels=4 * embed_dim),  # channels=3072
)
optim_wrapper = dict(optimizer=dict(lr=8e-4))  # README: optimizer.lr=8e-4 (the config file says 7e-4)
_README = (
    "bytedance/ibot@da316d8 evaluation/README.md:L99-L105 (./run.sh ade20k_dense_linear $JOB_NAME vit_base "
    "teacher 4"
)
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/linear/vit_base_512_ade20k_160k.py"
sources = {
    "total_batch_size": f"{_README} data.samples_per_gpu=4): 4 GPUs x 4",
    "model.backbone.out_with_norm": f"{_README} model.backbone.out_with_norm=true)",
    "optim_wrapper.optimizer.lr": f"{_README} optimizer.lr=8e-4), overriding {_CFG}:L64 (7e-4)",
}
del _README, _CFG
