# ViT-S/16: iBOT vit_small_512_ade20k_160k.py as iBOT's README runs it (4 GPUs x 4, out_with_norm, lr 3e-5).
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 384
total_batch_size = 16  # README: 4 GPUs x data.samples_per_gpu=4
model = dict(
    backbone=dict(out_with_norm=True),  # README: model.backbone.out_with_norm=true
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=3e-5),  # README optimizer.lr=3e-5 (= the config file's)
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.9),  # iBOT ViT-S: layer decay 0.9
)
_README = (
    "bytedance/ibot@da316d8 evaluation/README.md:L91-L97 (./run.sh ade20k_seg $JOB_NAME vit_small teacher 4"
)
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/upernet/vit_small_512_ade20k_160k.py"
sources = {
    "total_batch_size": f"{_README} data.samples_per_gpu=4): 4 GPUs x 4",
    "model.backbone.out_with_norm": f"{_README} model.backbone.out_with_norm=true)",
    "optim_wrapper.optimizer.lr": f"{_README} optimizer.lr=3e-5) = {_CFG}:L54",
    "optim_wrapper.paramwise_cfg": (
        f"{_CFG}:L55-L56 (LayerDecayOptimizerConstructor, layer_decay_rate=0.9); num_layers = the "
        "backbone's depth"
    ),
}
del _README, _CFG
