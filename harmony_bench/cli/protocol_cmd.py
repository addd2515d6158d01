"""``harmony-bench protocol show TASK``: the fully resolved protocol, to diff against a paper's config."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import yaml

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench protocol show ade20k --size s   # the mmengine config of the ViT-S/16 protocol
  harmony-bench protocol show ade20k --size b > vit_b.py  # diff against iBOT's vit_base_512_ade20k_160k.py
  harmony-bench protocol show ade20k --backbone vit-tiny-random --preset smoke
  harmony-bench protocol show imagenet-finetune --preset paper-vit-s
  harmony-bench protocol show coco --size s --detector mask-rcnn
  harmony-bench protocol show coco --size b --set schedule=3x   # iBOT's 36-epoch cascade config
"""
# The card a protocol is shown for when none is named: the iBOT ViT of that size (ImageNet mean/std).
SIZE_CARDS = {"s": "ibot-vit-s16-in1k", "b": "ibot-vit-b16-in1k", "l": "ibot-vit-l16-in1k"}


def register(subparsers: Any) -> None:
    """Add the ``protocol`` subcommand."""
    parser = add_command(subparsers, "protocol", "Show a task's resolved protocol.", EXAMPLES)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved protocol (config file for mmengine tasks)")
    show.add_argument("task")
    show.add_argument("--size", choices=sorted(SIZE_CARDS), help="model size (tasks with per-size protocols)")
    show.add_argument("--backbone", help="card to resolve for (default: the iBOT ViT of --size, or ViT-B)")
    show.add_argument("--preset")
    show.add_argument("--detector", choices=["mask-rcnn", "cascade-mask-rcnn"], help="coco: which detector")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the protocol: the task's ``describe(context)`` when it has one, else its resolved YAML config."""
    from pathlib import Path

    from harmony_bench.cli.run_cmd import parse_overrides
    from harmony_bench.models.names import resolve_backbone
    from harmony_bench.runner import RunOptions, TaskContext
    from harmony_bench.tasks import deep_merge, get_task

    spec = get_task(args.task)
    overrides = parse_overrides(args.overrides)
    if args.size:
        overrides = deep_merge(overrides, {"size": args.size})
    if args.detector:
        overrides = deep_merge(overrides, {"detector": args.detector})
    config = spec.resolve_config(args.preset, overrides)
    card = resolve_backbone(args.backbone or SIZE_CARDS[args.size or "b"]).card  # any --backbone form
    options = RunOptions(preset=args.preset, overrides=overrides)
    context = TaskContext(card=card, task=spec, config=config, options=options, work_dir=Path("<work_dir>"))
    describe = getattr(importlib.import_module(spec.runner.partition(":")[0]), "describe", None)
    print(describe(context) if describe else yaml.safe_dump(config, sort_keys=False), end="")
    return 0
