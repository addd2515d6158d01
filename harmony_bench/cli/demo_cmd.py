"""``harmony-bench demo``: the built-in small default that runs on a laptop CPU.

It exercises the real code paths on small synthetic data written in the real
benchmarks' layouts: the registries, every synthetic dataset kind, the tiny
backbone, and then the ``demo`` suite (``benchmarks/suites/demo.yaml``: each
task's ``smoke`` preset, the comparison table, the leaderboard files).  Its
numbers are smoke-test numbers, never benchmark results, and its records go
to their own directory (``results/synthetic/demo`` by default).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench demo
  harmony-bench demo --out /tmp/hb-demo      # a rerun resumes: finished cells are not run again
"""
DEMO_KINDS = ("imagenet", "ade20k", "coco", "captions", "coco-captions")
DEMO_BACKBONE = "vit-tiny-random"
DEMO_SUITE = "demo"


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = add_command(subparsers, "demo", "Run the built-in small default end to end on CPU.", EXAMPLES)
    parser.add_argument(
        "--out", type=Path, help="where to write data and records (default: results/synthetic/demo)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def banner(text: str) -> None:
    """Section header in the demo output."""
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def show_backbone(imagenet_root: Path) -> None:
    """Load the tiny backbone through the real loader and push synthetic images and prompts through it."""
    import torch
    from torchvision.datasets import ImageFolder

    from harmony_bench import load_backbone

    banner(f"backbone {DEMO_BACKBONE} (random init) on synthetic images")
    backbone = load_backbone(DEMO_BACKBONE).eval()
    print(f"  load report: {backbone.report.summary}")
    dataset = ImageFolder(imagenet_root / "val", transform=backbone.preprocess)
    images = torch.stack([dataset[i][0] for i in range(4)])
    names = (imagenet_root / "classnames.txt").read_text().split("\n")[:4]
    indices = backbone.card.architecture["out_indices"]
    with torch.no_grad():
        shapes = {
            "embed_image": tuple(backbone.embed_image(images).shape),
            "embed_text": tuple(backbone.embed_text([f"a photo of a {name}." for name in names]).shape),
            "pooled(cls+avgpool)": tuple(backbone.pooled(images, "cls+avgpool").shape),
            "features (NCHW)": [tuple(f.shape) for f in backbone.features(images, indices)],
        }
    for what, shape in shapes.items():
        print(f"  {what:<20} {shape}")


def run(args: argparse.Namespace) -> int:
    """List the registries, write the synthetic data, show the tiny backbone, then run the demo suite."""
    from harmony_bench import __version__
    from harmony_bench.leaderboard import write_suite_outputs
    from harmony_bench.listing import backbone_rows, format_text, task_rows
    from harmony_bench.suites import load_suite
    from harmony_bench.suites.local import run_suite
    from harmony_bench.suites.plan import data_root
    from harmony_bench.suites.state import cell_status

    suite = load_suite(DEMO_SUITE, args.out)
    suite.output.mkdir(parents=True, exist_ok=True)
    print(f"harmony-bench {__version__} demo — writing to {suite.output}")
    banner("backbones")
    print(format_text(backbone_rows(), ["name", "family", "timm_model", "weights"]))
    banner("tasks")
    print(format_text(task_rows(), ["name", "status", "description"]))
    roots = {}
    for kind in DEMO_KINDS:
        banner(f"synthetic {kind} data")
        started = time.perf_counter()
        roots[kind] = data_root(suite, kind, {})
        print(f"  root: {roots[kind]}   (pass as --data-root)  ({time.perf_counter() - started:.1f} s)")
    show_backbone(roots["imagenet"])
    banner(f"suite {suite.name}: {suite.description}")
    state = run_suite(suite, roots, progress=not args.no_progress)
    print(write_suite_outputs(suite))
    failed = [c.id for c in suite.cells if cell_status(state, c.id) != "done"]
    banner("done")
    print(
        f"Synthetic data under {suite.output / 'data'}; it is for smoke tests, never for benchmark numbers."
    )
    return 1 if failed else 0
