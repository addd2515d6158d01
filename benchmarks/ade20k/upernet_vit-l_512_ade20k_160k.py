# ViT-L/16: NOT in the iBOT/Harmony repos.  Indices [7, 11, 15, 23] are the BEiT/iBOT convention for
# 24 blocks; lr and layer decay are ViT-B's (8e-4, 0.65) for want of a published ViT-L run — treat
# numbers made with this file as our protocol, not the paper's.
_base_ = ["./_base_upernet_vit_512_ade20k_160k.py"]
embed_dim = 1024
model = dict(
    backbone=dict(out_indices=[7, 11, 15, 23], out_with_norm=True),
    neck=dict(embed_dim=embed_dim),
    decode_head=dict(in_channels=[embed_dim] * 4, channels=embed_dim),
    auxiliary_head=dict(in_channels=embed_dim),
)
optim_wrapper = dict(
    optimizer=dict(lr=8e-4),
    paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.65),
)
