# ViT-S/16: iBOT vit_small_512_ade20k_160k.py (the Harmony paper's size).
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 384
model = dict(
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=3e-5),  # iBOT ViT-S: lr 3e-5
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.9),  # iBOT ViT-S: layer decay 0.9
)
