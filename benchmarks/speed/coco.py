"""COCO Mask R-CNN train step: our registry ViT-S/16 vs OpenMMLab's reference ViT of the same size.

Both detectors are the ``mask-rcnn`` protocol's mmdet ``MaskRCNN`` (``benchmarks/coco/``: iBOT pyramid,
FPN 256 x 5 levels, RPN, RoI heads, AdamW) on the same batch; only the backbone differs:
``RegistryBackbone`` over timm's ViT-S/16 vs mmseg's ``VisionTransformer`` with the same sizes
(mmdet 3.3 ships no ViT backbone and its ViTDet port lives in the source tree's ``projects/``, which
a pip install does not have; mmseg's is OpenMMLab's reference ViT and builds inside mmdet).  One step
= forward + backward + optimizer step, the two timed alternately in one process; the ratio of median
times is printed (> 1: ours is faster), for the whole step and for the backbone alone.

Run: ``python benchmarks/speed/coco.py [--height 384 --width 576 --batch 2 --steps 5]`` (``make bench``).
Uses CUDA (bf16 autocast) when available, with 800 x 1216 inputs unless given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ade20k import (  # same ViT-S/16 pair as ADE20K
    _random_backbone,
    compare,
    ours,
    reference,
    report,
    timed_loss_step,
)

WIDTH = 384


def detector(backbone: dict) -> torch.nn.Module:
    """The ``mask-rcnn`` protocol's detector (ViT-S file, single-process BN) around ``backbone``."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    cfg = Config.fromfile(str(Path(__file__).parents[1] / "coco" / "mask-rcnn_vit-s_coco_1x.py"))
    model = cfg.model
    model.backbone = backbone
    pyramid, fpn = model.neck
    pyramid.embed_dim, pyramid.norm_cfg = WIDTH, dict(type="BN", requires_grad=True)
    fpn.in_channels = [WIDTH] * 4
    model.roi_head.bbox_head.num_classes = model.roi_head.mask_head.num_classes = 80
    return MODELS.build(model)


def batch(n: int, height: int, width: int, device: str) -> tuple[torch.Tensor, list]:
    """Random images with five random boxes (and box-shaped masks) each."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        xy = torch.rand(5, 2, generator=gen) * torch.tensor([width * 0.6, height * 0.6])
        wh = 32 + torch.rand(5, 2, generator=gen) * torch.tensor([width * 0.3, height * 0.3])
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = np.zeros((5, height, width), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        instances = InstanceData(
            bboxes=boxes.to(device),
            labels=torch.randint(0, 80, (5,), generator=gen).to(device),
            masks=BitmapMasks(masks, height, width),
        )
        sample = DetDataSample(gt_instances=instances)
        shape = (height, width)
        sample.set_metainfo(
            {"img_shape": shape, "pad_shape": shape, "ori_shape": shape, "scale_factor": (1, 1)}
        )
        samples.append(sample)
    return torch.randn(n, 3, height, width, device=device), samples


def main() -> None:
    """Time both detectors alternately and print the ratio of median step times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    from unittest import mock

    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmseg.models.backbones import VisionTransformer

    from harmony_bench.dense import register_into

    register_into("mmdet")
    init_default_scope("mmdet")
    MODELS.register_module("VisionTransformer", module=VisionTransformer, force=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    height = args.height or (800 if device == "cuda" else 384)
    width = args.width or (1216 if device == "cuda" else 576)
    torch.manual_seed(0)
    with mock.patch("harmony_bench.dense.adapter.load_backbone", _random_backbone):
        models = {"ours": detector({**ours(height), "img_size": None}), "mmseg": detector(reference(height))}
    images, samples = batch(args.batch, height, width, device)
    print(f"device {device}, input {height}x{width}, batch {args.batch}, {args.steps} timed steps each")

    def full_step(model, optim):
        return timed_loss_step(model, optim, images, samples, device)

    series = compare(models, full_step, images, args.steps)
    report(models, "Mask R-CNN train step", *series)


if __name__ == "__main__":
    main()
