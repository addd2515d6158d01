"""Linear probe: what the papers' protocol costs against the cached shortcut, same model, data and heads.

- ``augmented`` (presets ``paper``, ``slip``, ``ibot-*``, ``mae-*``, ``dinov2``): every epoch the train
  images are re-read, RandomResizedCrop + flip are drawn and the frozen backbone runs again — one
  extraction per image per epoch, as the source scripts do;
- ``cached`` (preset ``fast``): the eval-transform features are extracted once and every epoch trains on
  them — one extraction per image, no augmentation (a recorded deviation).

Both run the real task (``harmony_bench.runner.run`` with the ``smoke`` preset and ``--set mode=...``):
the same head grid, SGD, schedule and reported number.  Prints the wall-clock of each, their ratio (about
``epochs``: the augmented protocol's cost is the backbone, once per image per epoch), and both top-1s.
On real ImageNet the ratio tells how many GPU-hours the papers' protocol needs over the cache.

Run: ``python benchmarks/speed/linear_probe.py [--n 200 --epochs 10 --backbone vit-tiny-random]``
(or ``make bench``).  Uses CUDA when available.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from harmony_bench.data.synth import synthesize
from harmony_bench.results import load_record
from harmony_bench.runner import RunOptions, run


def timed(backbone: str, root: Path, output: Path, mode: str, epochs: int) -> tuple[float, float]:
    """``(seconds, top-1)`` of one smoke-preset run in ``mode``, without a feature cache from before."""
    overrides = {"mode": mode, "train": {"epochs": epochs}, "cache": {"enabled": mode == "cached"}}
    start = time.perf_counter()
    path = run(
        backbone,
        "imagenet-linear",
        RunOptions(preset="smoke", data_root=root, output=output / mode, overrides=overrides),
    )
    seconds = time.perf_counter() - start
    return seconds, float(load_record(path)["metrics"]["top1"]["value"])


def main() -> None:
    """Measure both modes on one synthetic dataset and print the ratio and accuracies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="vit-tiny-random")
    parser.add_argument("--n", type=int, default=200, help="synthetic train images (val: a quarter)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize("imagenet", Path(tmp) / "imagenet", n=args.n, seed=args.seed).root
        augmented_s, augmented_top1 = timed(args.backbone, root, Path(tmp), "augmented", args.epochs)
        cached_s, cached_top1 = timed(args.backbone, root, Path(tmp), "cached", args.epochs)
    print(f"{args.backbone}: {args.n} train images, {args.epochs} epochs, smoke preset's heads")
    print(f"augmented (papers: features every epoch): {augmented_s:8.2f} s, top-1 {augmented_top1:.1f} %")
    print(f"cached    (fast: features once):          {cached_s:8.2f} s, top-1 {cached_top1:.1f} %")
    print(f"cost of the papers' protocol: {augmented_s / cached_s:.1f}x the cached one")


if __name__ == "__main__":
    main()
