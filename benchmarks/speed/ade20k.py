"""ADE20K UperNet train step: our registry ViT (timm, fused SDPA attention) vs mmseg's own ViT.

Both segmentors are mmseg ``EncoderDecoder`` models with the same neck (``Feature2Pyramid``), heads
(``UPerHead`` + ``FCNHead``), loss, optimizer (AdamW) and input batch; only the backbone differs:
``RegistryBackbone`` over a timm ``vit_small_patch16_224`` (ViT-S/16: 12 blocks, width 384, 6 heads,
drop path 0.1, block outputs 3/5/7/11) vs mmseg's ``VisionTransformer`` with the same sizes.  One
step = forward + backward + optimizer step.  The two are timed alternately in the same process and
the ratio of median step times is printed (> 1: ours is faster).  On a CPU the shared UPerHead (width
384 on 4x-upsampled maps) takes most of a step, so the backbone's own forward + backward is timed too,
where the two implementations actually differ.

Run: ``python benchmarks/speed/ade20k.py [--crop 256 --batch 2 --steps 6]`` (or ``make bench``).
Uses CUDA (bf16 autocast) when available; the CPU default uses a 256 crop to stay short.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

WIDTH, DEPTH, HEADS, INDICES = 384, 12, 6, [3, 5, 7, 11]


def segmentor(backbone: dict, crop: int) -> torch.nn.Module:
    """An mmseg UperNet around ``backbone`` (ADE20K protocol heads at ViT-S width)."""
    from mmseg.registry import MODELS

    norm = dict(type="BN", requires_grad=True)
    cfg = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", size=(crop, crop), seg_pad_val=255),
        backbone=backbone,
        neck=dict(type="Feature2Pyramid", embed_dim=WIDTH, rescales=[4, 2, 1, 0.5], norm_cfg=norm),
        decode_head=dict(
            type="UPerHead",
            in_channels=[WIDTH] * 4,
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=WIDTH,
            num_classes=150,
            norm_cfg=norm,
            align_corners=False,
        ),
        auxiliary_head=dict(
            type="FCNHead",
            in_channels=WIDTH,
            in_index=2,
            channels=256,
            num_convs=1,
            concat_input=False,
            num_classes=150,
            norm_cfg=norm,
            align_corners=False,
            loss_decode=dict(type="CrossEntropyLoss", loss_weight=0.4),
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    return MODELS.build(cfg)


def ours(crop: int) -> dict:
    """Registry backbone: timm ViT-S/16 (random init, the card's architecture)."""
    return dict(
        type="RegistryBackbone",
        backbone="ibot-vit-s16-in1k",
        out_indices=INDICES,
        drop_path_rate=0.1,
        img_size=crop,
        model_overrides={},
    )


def reference(crop: int) -> dict:
    """mmseg's ViT with the same math (pre-norm blocks, qkv bias, cls token, LayerNorm eps 1e-6)."""
    return dict(
        type="VisionTransformer",
        img_size=(crop, crop),
        patch_size=16,
        embed_dims=WIDTH,
        num_layers=DEPTH,
        num_heads=HEADS,
        mlp_ratio=4,
        out_indices=INDICES,
        qkv_bias=True,
        drop_path_rate=0.1,
        with_cls_token=True,
        final_norm=False,
        norm_cfg=dict(type="LN", eps=1e-6),
        interpolate_mode="bicubic",
    )


def setup(doc: str) -> tuple[argparse.Namespace, str]:
    """``--crop/--batch/--steps`` parsed, our modules registered into mmseg, the device picked, seed 0."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    from mmengine.registry import init_default_scope

    from harmony_bench.dense import register_into

    register_into("mmseg")
    init_default_scope("mmseg")
    torch.manual_seed(0)
    return args, "cuda" if torch.cuda.is_available() else "cpu"


def main() -> None:
    """Time both segmentors alternately and print the ratio of median step times."""
    from unittest import mock

    args, device = setup(__doc__)
    with mock.patch("harmony_bench.dense.adapter.load_backbone", _random_backbone):
        models = {
            "ours": segmentor(ours(args.crop), args.crop),
            "mmseg": segmentor(reference(args.crop), args.crop),
        }
    images = torch.randn(args.batch, 3, args.crop, args.crop, device=device)
    labels = torch.randint(0, 150, (args.batch, 1, args.crop, args.crop), device=device)
    print(f"device {device}, crop {args.crop}, batch {args.batch}, {args.steps} timed steps each")

    def full_step(model, optim):
        return _step(model, optim, images, labels, device)

    series = compare(models, full_step, images, args.steps)
    report(models, "train step", *series)


def compare(models: dict, full_step, images: torch.Tensor, steps: int) -> tuple[dict, dict]:
    """Time each model's full step and its backbone's forward+backward alternately, ``steps`` times.

    Alternating (ours, reference, ours, ...) spreads any drift of a shared machine over both; the
    first round warms up allocators and kernels and is not counted.

    Returns:
        ``({name: full-step seconds}, {name: backbone fwd+bwd seconds})``, one entry per counted round.
    """
    device = images.device.type
    times: dict[str, list[float]] = {k: [] for k in models}
    backbone_times: dict[str, list[float]] = {k: [] for k in models}
    optims = {}
    for name, model in models.items():
        model.to(device).train()
        optims[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for round_ in range(steps + 1):
        for name, model in models.items():
            full = full_step(model, optims[name])
            alone = _backbone_step(model.backbone, images, device)
            if round_:
                times[name].append(full)
                backbone_times[name].append(alone)
    return times, backbone_times


def report(models: dict, label: str, times: dict, backbone_times: dict) -> None:
    """Parameter counts, median times and the ratio reference / ours of the full step and the backbone."""
    params = {k: sum(p.numel() for p in m.backbone.parameters()) for k, m in models.items()}
    print(f"backbone params: ours {params['ours'] / 1e6:.2f} M, mmseg ViT {params['mmseg'] / 1e6:.2f} M")
    for name, series in ((label, times), ("backbone fwd+bwd", backbone_times)):
        med = {k: statistics.median(v) for k, v in series.items()}
        print(f"median {name}: ours {med['ours'] * 1e3:.0f} ms, mmseg ViT {med['mmseg'] * 1e3:.0f} ms")
        print(f"  ratio (mmseg / ours): {med['mmseg'] / med['ours']:.2f}x")


def _random_backbone(name: str, checkpoint: str | None = None, **kwargs):
    """The card's architecture at random init (no download): speed does not depend on the weights."""
    from harmony_bench.cards import get_card
    from harmony_bench.models.backbone import Backbone
    from harmony_bench.models.build import build_image_model
    from harmony_bench.models.report import LoadReport

    card = get_card(name)
    kwargs.pop("trust_checkpoint", None)
    kwargs.pop("pos_embed_antialias", None)  # a checkpoint-loading option: nothing is loaded here
    model = build_image_model(card, kwargs)
    return Backbone(
        card, model, LoadReport(backbone=name, converter=None), None, None, kwargs.get("img_size")
    )


def _backbone_step(backbone, images, device) -> float:
    """Forward + backward through the backbone alone (gradients are discarded by the next full step)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        maps = backbone(images)
    sum(m.float().mean() for m in maps).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _step(model, optim, images, labels, device) -> float:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    samples = []
    for label in labels:
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo({"img_shape": images.shape[-2:], "pad_shape": images.shape[-2:]})
        samples.append(sample)
    return timed_loss_step(model, optim, images, samples, device)


def timed_loss_step(model, optim, images, samples, device) -> float:
    """One timed forward (``mode="loss"``) + backward + optimizer step of an OpenMMLab model (seg or det)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        losses = model(images, samples, mode="loss")
    # mmdet returns some losses as per-stage lists (cascade heads)
    loss = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if "loss" in k)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
