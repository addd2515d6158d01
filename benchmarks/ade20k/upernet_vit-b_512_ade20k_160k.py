# ViT-B/16: iBOT vit_base_512_ade20k_160k.py, with the lr of the Harmony/iBOT README command.
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 768
model = dict(
    backbone=dict(out_with_norm=True),  # README: model.backbone.out_with_norm=true
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=8e-4),  # README: optimizer.lr=8e-4 (the config file says 7e-4)
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65),  # iBOT ViT-B: layer decay 0.65
)
