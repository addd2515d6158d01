"""``harmony-bench protocol show TASK`` / ``protocol sheet``: resolved protocols with their sources.

``show`` prints one resolved protocol (the mmengine config for ADE20K/COCO) with every value's citation;
``sheet`` writes benchmarks/PROTOCOLS.md, every task x preset resolved, or checks it with ``--check``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from harmony_bench.cli._help import add_command
from harmony_bench.dense.protocol import SIZE_CARDS

EXAMPLES = """  harmony-bench protocol show ade20k --size s   # the mmengine config of the ViT-S/16 protocol
  harmony-bench protocol show ade20k --size b > vit_b.py  # diff against iBOT's vit_base_512_ade20k_160k.py
  harmony-bench protocol show ade20k --backbone vit-tiny-random --preset smoke
  harmony-bench protocol show imagenet-finetune --preset paper-vit-s
  harmony-bench protocol show coco --size s --detector mask-rcnn
  harmony-bench protocol show coco --size b --set schedule=3x   # iBOT's 36-epoch cascade config
  harmony-bench protocol show ade20k --size b --preset harmony-readme   # Harmony README's ViT-B command
  harmony-bench protocol sheet            # regenerate benchmarks/PROTOCOLS.md
  harmony-bench protocol sheet --check    # exit 1 when benchmarks/PROTOCOLS.md is stale (CI runs this)
"""


def register(subparsers: Any) -> None:
    """Add the ``protocol`` subcommand."""
    parser = add_command(
        subparsers,
        "protocol",
        "Show a task's resolved protocol and its sources; write the protocol sheet.",
        EXAMPLES,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the resolved protocol (config file for mmengine tasks)")
    show.add_argument("task")
    show.add_argument("--size", choices=sorted(SIZE_CARDS), help="model size (tasks with per-size protocols)")
    show.add_argument("--backbone", help="card to resolve for (default: the iBOT ViT of --size, or ViT-B)")
    show.add_argument("--preset")
    show.add_argument("--detector", choices=["mask-rcnn", "cascade-mask-rcnn"], help="coco: which detector")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(func=run)
    sheet = actions.add_parser("sheet", help="write (or --check) benchmarks/PROTOCOLS.md")
    sheet.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    sheet.add_argument("--out", type=Path, help="where to write (default: benchmarks/PROTOCOLS.md)")
    sheet.set_defaults(func=run_sheet)


def run_sheet(args: argparse.Namespace) -> int:
    """Write the protocol sheet, or with ``--check`` report whether the committed one is stale."""
    from harmony_bench.atomic import atomic_write_text
    from harmony_bench.paths import REPO_ROOT, TASK_GROUPS
    from harmony_bench.protocols import load_tasks
    from harmony_bench.sheet import SHEET_PATH, generate, stale
    from harmony_bench.sources import protocol_problems

    registry = load_tasks([REPO_ROOT / "benchmarks" / group for group in TASK_GROUPS])
    problems = [p for name in registry.names() for p in protocol_problems(registry.get(name))]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    out = args.out or SHEET_PATH
    if args.check:
        diff = stale(out)
        if diff:
            print("\n".join(diff[:60]), file=sys.stderr)
            print(
                f"error: {out} is out of date; run `harmony-bench protocol sheet` and commit it",
                file=sys.stderr,
            )
            return 1
        print(f"{out} is up to date")
        return 0
    atomic_write_text(out, generate())
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Print the protocol with the source of every value and the preset's deviations.

    The task's ``describe(context)`` when it has one (the mmengine config), else its resolved YAML config.
    """
    from harmony_bench.cli._help import parse_overrides
    from harmony_bench.models.names import resolve_backbone
    from harmony_bench.protocols import deep_merge, get_task
    from harmony_bench.runner import RunOptions, TaskContext

    spec = get_task(args.task)
    overrides = parse_overrides(args.overrides)
    if args.size:
        overrides = deep_merge(overrides, {"size": args.size})
    if args.detector:
        overrides = deep_merge(overrides, {"detector": args.detector})
    card = resolve_backbone(args.backbone or SIZE_CARDS[args.size or "b"]).card  # any --backbone form
    preset = spec.preset_for(args.preset, card.family) if args.backbone else args.preset  # as `run` would
    config = spec.resolve_config(preset, overrides)
    options = RunOptions(preset=preset, overrides=overrides)
    context = TaskContext(card=card, task=spec, config=config, options=options, work_dir=Path("<work_dir>"))
    describe = getattr(importlib.import_module(spec.runner.partition(":")[0]), "describe", None)
    print(describe(context) if describe else _with_sources(spec, config, preset), end="")
    print(_preset_notes(spec, preset), end="")
    return 0


def _with_sources(spec: Any, config: dict[str, Any], preset: str | None) -> str:
    """The resolved YAML config, then ``path = value  <- source`` for every value."""
    from harmony_bench.sources import find_source, flatten, render_value

    lines = [yaml.safe_dump(config, sort_keys=False).rstrip(), "", "# values and their sources:"]
    tables = spec.sources_for(preset)
    for path, value in flatten(config):
        found = find_source(path, tables)
        lines.append(f"#   {path} = {render_value(value)}\n#       <- {found[1] if found else 'uncited'}")
    return "\n".join(lines) + "\n"


def _preset_notes(spec: Any, preset: str | None) -> str:
    """What the preset reproduces and its deviations, as comment lines."""
    name = preset or spec.default_preset
    doc = spec.preset_doc(preset)
    summary = " ".join((doc.get("summary") or "").split())
    lines = [f"# preset {name} of {spec.name} v{spec.protocol_version}: {summary}"]
    lines += [f"# deviation: {' '.join(d.split())}" for d in spec.deviations_for(preset)]
    return "\n".join(lines) + "\n"
