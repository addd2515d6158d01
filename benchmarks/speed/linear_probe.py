"""Linear probe: our cached one-pass grid vs the naive protocol, same model, data, epochs and LRs.

- ours: extract train and val features once (what ``imagenet-linear`` does on a cache miss), then train
  every (feature variant × learning rate) head together in one pass per epoch over the cached features;
- naive: one head at a time, re-extracting the train features with the backbone in every epoch (and the
  val features for its evaluation), as an evaluation script without a cache does.

Both use the same shuffling order, initialisation scheme, SGD (momentum 0.9, wd 0), cosine schedule
and batch/256 LR scaling, so their accuracies should agree up to the fp16 storage of cached features.
Prints the wall-clock ratio (target ≥ 20×) and both accuracies.

Run: ``python benchmarks/speed/linear_probe.py [--n 200 --epochs 10 --backbone vit-tiny-random]``
(or ``make bench``).  Uses CUDA when available.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from harmony_bench import load_backbone
from harmony_bench.data.imagenet import imagenet_split, skip_corrupt_collate
from harmony_bench.data.synth import synthesize
from harmony_bench.tasks.imagenet.common import select_device, topk_correct
from harmony_bench.tasks.imagenet.features import (
    FeatureSpec,
    Variant,
    batch_features,
    extract,
    variant_features,
)
from harmony_bench.tasks.imagenet.linear import build_heads, evaluate_grid, lr_name, train_grid

# DINOv2's 13 learning rates (the paper protocol's grid)
LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]


def ours(backbone, train_set, val_set, variants, settings, device, seed):
    """Extract once, train the whole grid in one pass per epoch; returns {cell: top1} and seconds."""
    start = time.perf_counter()
    spec = FeatureSpec.covering(variants)
    train = extract(backbone, train_set, spec, device, settings["batch_size"])
    val = extract(backbone, val_set, spec, device, settings["batch_size"])
    heads = train_grid(train, variants, len(train_set.classes), settings, device, seed)
    hits = evaluate_grid(heads, val, variants, device, 1024)
    seconds = time.perf_counter() - start
    total = val["count"]
    return {
        (v.name, lr): 100.0 * hits[v.name][i][1] / total for v in variants for i, lr in enumerate(LRS)
    }, seconds


def initial_heads(backbone, train_set, variants, device, seed):
    """The same initial heads as ``train_grid`` draws (same dims, same seeded generator)."""
    spec = FeatureSpec.covering(variants)
    with torch.no_grad():
        probe = batch_features(backbone, train_set[0][0][None].to(device), spec)
    dims = {v.name: variant_features(probe, v).shape[1] for v in variants}
    return build_heads(dims, len(train_set.classes), LRS, 0.01, seed)


def naive_cell(head, train_set, val_set, backbone, variant, lr, settings, device, seed):
    """One head, one LR: features re-extracted from the images in every epoch; returns val top-1."""
    spec = FeatureSpec.covering([variant])
    batch_size, epochs = settings["batch_size"], settings["epochs"]
    n = len(train_set)
    head = head.to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr * batch_size / 256, momentum=0.9, weight_decay=0.0)
    steps = epochs * -(-n // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).tolist()
        loader = DataLoader(Subset(train_set, order), batch_size=batch_size, collate_fn=skip_corrupt_collate)
        for images, targets in loader:
            with torch.no_grad():
                features = variant_features(batch_features(backbone, images.to(device), spec), variant)
            loss = F.cross_entropy(head(features), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    correct = total = 0
    with torch.no_grad():
        for images, targets in DataLoader(val_set, batch_size=256, collate_fn=skip_corrupt_collate):
            features = variant_features(batch_features(backbone, images.to(device), spec), variant)
            correct += topk_correct(head(features).cpu(), targets, (1,))[1]
            total += len(targets)
    return 100.0 * correct / total


def main() -> None:
    """Measure both protocols on one synthetic dataset and print the ratio and accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="vit-tiny-random")
    parser.add_argument("--n", type=int, default=200, help="synthetic train images (val: a quarter)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default="cls,cls+avgpool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = select_device("auto")
    torch.manual_seed(args.seed)
    variants = [Variant.parse(name) for name in args.variants.split(",")]
    settings = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rates": LRS, "momentum": 0.9}
    backbone = load_backbone(args.backbone).eval().to(device)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize("imagenet", Path(tmp) / "imagenet", n=args.n, seed=args.seed).root
        train_set = imagenet_split(root, "train", backbone.preprocess)
        val_set = imagenet_split(root, "val", backbone.preprocess)
        cells = len(variants) * len(LRS)
        print(
            f"{args.backbone} on {device}: {len(train_set)} train / {len(val_set)} val images, "
            f"{len(variants)} variants x {len(LRS)} LRs = {cells} heads, {args.epochs} epochs"
        )
        grid, ours_s = ours(backbone, train_set, val_set, variants, settings, device, args.seed)
        start = time.perf_counter()
        heads = initial_heads(backbone, train_set, variants, device, args.seed)
        naive = {
            (v.name, lr): naive_cell(
                heads[v.name][i], train_set, val_set, backbone, v, lr, settings, device, args.seed
            )
            for v in variants
            for i, lr in enumerate(LRS)
        }
        naive_s = time.perf_counter() - start
    best_ours, best_naive = max(grid, key=grid.get), max(naive, key=naive.get)
    diffs = [abs(grid[cell] - naive[cell]) for cell in grid]
    print(f"ours  (extract once + one-pass grid): {ours_s:8.2f} s")
    print(f"naive (re-extract per epoch, 1 LR):   {naive_s:8.2f} s")
    print(f"speed-up: {naive_s / ours_s:.1f}x (target >= 20x)")
    print(f"best top-1 ours:  {grid[best_ours]:.1f} % ({best_ours[0]} {lr_name(best_ours[1])})")
    print(f"best top-1 naive: {naive[best_naive]:.1f} % ({best_naive[0]} {lr_name(best_naive[1])})")
    print(f"per-head |ours - naive| top-1: mean {sum(diffs) / len(diffs):.2f}, max {max(diffs):.2f} points")


if __name__ == "__main__":
    main()
