"""``harmony-bench data synth``: small learnable datasets in the real benchmarks' layouts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench data synth --kind imagenet --out /tmp/imagenet-synth
  harmony-bench data synth --kind ade20k --out /tmp/ade --n 32 --size 128
  harmony-bench data synth --kind coco --out /tmp/coco --seed 1
  harmony-bench data synth --kind captions --out /tmp/cc-synth
  harmony-bench data synth --kind coco-captions --out /tmp/coco-captions   # retrieval-coco
  harmony-bench data synth --kind flickr30k --out /tmp/flickr30k           # retrieval-flickr30k
"""


def register(subparsers: Any) -> None:
    """Add the ``data`` subcommand group."""
    parser = add_command(subparsers, "data", "Dataset utilities.", EXAMPLES)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = add_command(
        actions, "synth", "Write a synthetic dataset in a real benchmark's on-disk layout.", EXAMPLES
    )
    synth.add_argument(
        "--kind", required=True, help="imagenet, ade20k, coco, captions, coco-captions or flickr30k"
    )
    synth.add_argument(
        "--out", required=True, type=Path, help="output directory (must not exist or be empty)"
    )
    synth.add_argument(
        "--n", type=int, help="number of training (retrieval kinds: test) images (default: per kind)"
    )
    synth.add_argument("--size", type=int, help="image side in pixels (default: per kind)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    """Write the dataset and print its summary."""
    from harmony_bench.data.synth import synthesize

    summary = synthesize(args.kind, args.out, n=args.n, size=args.size, seed=args.seed)
    print(summary.format())
    return 0
