"""ADE20K train step: the frozen-backbone linear protocol (``ade20k-linear``) vs UperNet (``ade20k``).

Both are mmseg ``EncoderDecoder`` models around the same registry ViT-S/16 (timm ``vit_small_patch16_224``
architecture, random init: 12 blocks, width 384, block outputs 3/5/7/11) on the same batch.  UperNet trains
everything (iBOT pyramid, UPerHead + FCN auxiliary head, backbone with drop path 0.1); the linear protocol
runs the backbone frozen (``FrozenRegistryBackbone``: eval mode, features under ``no_grad``, no backward
through it) and trains one 1x1 convolution over the four maps concatenated, with the optimizer holding
only that convolution.  One step = forward + backward + optimizer step; the two are timed alternately in
the same process and the ratio of median step times is printed (> 1: the linear step is faster).

Run: ``python benchmarks/speed/ade20k_linear.py [--crop 256 --batch 2 --steps 6]``.
Uses CUDA (bf16 autocast) when available; the CPU default uses a 256 crop to stay short.
"""

from __future__ import annotations

import statistics
from unittest import mock

import torch
from ade20k import WIDTH, _random_backbone, _step, ours, segmentor, setup


def linear_segmentor(crop: int) -> torch.nn.Module:
    """The ``ade20k-linear`` model at ViT-S width: frozen backbone, FCNHead (num_convs=0) over 4 maps."""
    from mmseg.registry import MODELS

    backbone = {**ours(crop), "type": "FrozenRegistryBackbone", "drop_path_rate": 0.0}
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", size=(crop, crop), seg_pad_val=255),
        backbone=backbone,
        decode_head=dict(
            type="FCNHead",
            in_channels=[WIDTH] * 4,
            in_index=[0, 1, 2, 3],
            input_transform="resize_concat",
            channels=4 * WIDTH,
            num_convs=0,
            concat_input=False,
            dropout_ratio=0.0,
            num_classes=150,
            align_corners=False,
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    return MODELS.build(cfg)


def main() -> None:
    """Time both train steps alternately and print the ratio of median step times (UperNet / linear)."""
    args, device = setup(__doc__)
    with mock.patch("harmony_bench.dense.adapter.load_backbone", _random_backbone):
        models = {"upernet": segmentor(ours(args.crop), args.crop), "linear": linear_segmentor(args.crop)}
    images = torch.randn(args.batch, 3, args.crop, args.crop, device=device)
    labels = torch.randint(0, 150, (args.batch, 1, args.crop, args.crop), device=device)
    print(f"device {device}, crop {args.crop}, batch {args.batch}, {args.steps} timed steps each")
    optims = {}
    for name, model in models.items():
        model.to(device).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optims[name] = torch.optim.AdamW(trainable, lr=1e-4)
        print(f"{name}: {sum(p.numel() for p in trainable) / 1e6:.3f} M trained parameters")
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.steps + 1):  # the first round warms up allocators and kernels
        for name, model in models.items():
            seconds = _step(model, optims[name], images, labels, device)
            if round_:
                times[name].append(seconds)
    median = {name: statistics.median(series) for name, series in times.items()}
    print(
        f"median train step: UperNet {median['upernet'] * 1e3:.0f} ms, linear {median['linear'] * 1e3:.0f} ms"
    )
    print(f"  ratio (UperNet / linear): {median['upernet'] / median['linear']:.2f}x")


if __name__ == "__main__":
    main()
