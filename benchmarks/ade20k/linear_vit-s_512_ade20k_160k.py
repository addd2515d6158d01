# ViT-S/16: iBOT's configs/linear/vit_small_512_ade20k_160k.py as the file stands (no README command runs
# it): 8 GPUs x 2, lr 3e-5, out_with_norm at its default (False).  Harmony's copy is byte-identical.
_base_ = ["./_base_linear_vit_512_ade20k_160k.py"]
embed_dim = 384
model = dict(decode_head=dict(in_channels=[embed_dim] * 4, channels=4 * embed_dim))  # channels=1536
optim_wrapper = dict(optimizer=dict(lr=3e-5))  # lr=3e-5 (the same as the ViT-S UperNet file)
_CFG = "bytedance/ibot@da316d8 evaluation/semantic_segmentation/configs/linear/vit_small_512_ade20k_160k.py"
sources = {
    "crop_size": f"{_CFG}:L20 (crop_size = (512, 512))",
    "total_batch_size": f"{_CFG}:L72-L73 (8 GPUs x samples_per_gpu=2)",
    "model.backbone.out_indices": (
        f"{_CFG}:L39 (out_indices=[3, 5, 7, 11]; a backbone with fewer blocks: evenly spaced ones, harmony-bench)"
    ),
    "model.backbone.img_size": f"{_CFG}:L29 (img_size=[512])",
    "model.decode_head": (
        f"{_CFG}:L41-L54 (FCNHead over in_index [0, 1, 2, 3], input_transform resize_concat, num_convs=0, "
        "concat_input False, dropout 0, CE weight 1.0)"
    ),
    "model.decode_head.channels": f"{_CFG}:L46 (channels=1536 = 4 x 384, the concatenated width)",
    "model.test_cfg": f"{_CFG}:L55 (slide, 512 window, stride 341)",
    "optim_wrapper.optimizer": f"{_CFG}:L64 (AdamW, betas (0.9, 0.999), weight_decay 0.05; no paramwise_cfg)",
    "optim_wrapper.optimizer.lr": f"{_CFG}:L64 (lr=3e-5)",
    "param_scheduler": (
        f"{_CFG}:L66-L70 (poly, power 1.0, min_lr 0, linear warm-up 1500 iterations, ratio 1e-6) as mmcv 1.x "
        "runs it: open-mmlab/mmcv@4c01b02 (v1.7.2) mmcv/runner/hooks/lr_updater.py:L244-L252, L87-L96, "
        "L140-L150"
    ),
}
del _CFG
