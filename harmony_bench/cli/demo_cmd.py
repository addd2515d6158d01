"""``harmony-bench demo``: the built-in small default that runs on a laptop CPU.

It exercises the real code paths on small synthetic data written in the real
benchmarks' layouts: the registries, every synthetic dataset kind, and each
available task's ``smoke`` preset on the tiny random-init backbone.  Its
numbers are smoke-test numbers, never benchmark results.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench demo
  harmony-bench demo --out /tmp/hb-demo
"""
DEMO_KINDS = ("imagenet", "ade20k", "coco", "captions")
DEMO_BACKBONE = "vit-tiny-random"


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = add_command(subparsers, "demo", "Run the built-in small default end to end on CPU.", EXAMPLES)
    parser.add_argument("--out", type=Path, help="where to write data and records (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0)
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


def run_smoke_tasks(data_roots: dict[str, Path], records_dir: Path, seed: int) -> None:
    """Run every available task that has a ``smoke`` preset on the tiny backbone, then tabulate."""
    from harmony_bench.results import iter_records
    from harmony_bench.runner import RunOptions
    from harmony_bench.runner import run as run_task
    from harmony_bench.tables import pivot, records_to_frame, render, summarize
    from harmony_bench.tasks import task_registry

    registry = task_registry()
    smoke = [registry.get(n) for n in registry.names() if "smoke" in registry.get(n).presets]
    for spec in smoke:
        banner(f"task {spec.name} (smoke preset, {DEMO_BACKBONE})")
        options = RunOptions(
            data_root=data_roots[spec.dataset["synth_kind"]], preset="smoke", seed=seed, output=records_dir
        )
        print(f"result record: {run_task(DEMO_BACKBONE, spec.name, options)}")
    if smoke:
        banner("results (synthetic data, smoke presets)")
        records, _ = iter_records([records_dir])
        print(render(pivot(summarize(records_to_frame(records))), "md"))


def run(args: argparse.Namespace) -> int:
    """List the registries, write every synthetic dataset kind, then run the available smoke tasks."""
    from harmony_bench import __version__
    from harmony_bench.cli.list_cmd import backbone_rows, format_text, task_rows
    from harmony_bench.data.synth import synthesize

    out = args.out or Path(tempfile.mkdtemp(prefix="harmony-bench-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"harmony-bench {__version__} demo — writing to {out}")
    banner("backbones")
    print(format_text(backbone_rows(), ["name", "family", "timm_model", "weights"]))
    banner("tasks")
    print(format_text(task_rows(), ["name", "status", "description"]))
    data_roots = {}
    for kind in DEMO_KINDS:
        banner(f"synthetic {kind} data")
        started = time.perf_counter()
        summary = synthesize(kind, out / "data" / kind, seed=args.seed)
        data_roots[kind] = summary.root
        print(summary.format())
        print(f"({time.perf_counter() - started:.1f} s)")
    show_backbone(data_roots["imagenet"])
    run_smoke_tasks(data_roots, out / "records", args.seed)
    banner("done")
    print(f"Synthetic data under {out / 'data'}; it is for smoke tests, never for benchmark numbers.")
    return 0
