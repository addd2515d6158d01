# ViT-L/16: Harmony eval/semantic_segmentation/configs/upernet/vit_large_512_ade20k_160k.py (iBOT's file of
# the same name): blocks 7/11/15/23, drop path 0.2, lr 2e-5, layer decay 0.65 over 24 layers, 8 GPUs x 2 = 16.
# No Harmony ViT-L ADE20K run is published; the file is what the repo ships for that size.
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
