# ViT-B/16, preset `harmony-readme`: the semantic-segmentation command of Harmony's README (4 GPUs x 4,
# out_with_norm, lr 8e-4).  8e-4 is the lr of iBOT's frozen-backbone *linear* ADE20K command, so this is
# probably a copy slip in Harmony's README; kept to reproduce that command as written.
_base_ = ["./upernet_vit-b_512_ade20k_160k.py"]
total_batch_size = 16  # Harmony README: 4 GPUs x data.samples_per_gpu=4
model = dict(backbone=dict(out_with_norm=True))  # Harmony README: model.backbone.out_with_norm=true
optim_wrapper = dict(optimizer=dict(lr=8e-4))  # Harmony README: optimizer.lr=8e-4
_README = (
    "MohammedSB/Harmony@848f7ac README.md:L85-L94 (torch.distributed.launch --nproc_per_node=4 ... train.py"
)
sources = {
    "total_batch_size": f"{_README} data.samples_per_gpu=4): 4 GPUs x 4",
    "model.backbone.out_with_norm": f"{_README} model.backbone.out_with_norm=true)",
    "optim_wrapper.optimizer.lr": (
        f"{_README} optimizer.lr=8e-4); = the lr of iBOT's linear-head command, "
        "bytedance/ibot@da316d8 evaluation/README.md:L99-L105"
    ),
}
del _README
