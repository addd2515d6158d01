"""``harmony-bench list backbones|tasks``: what the registries hold."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harmony_bench.cards import list_cards
from harmony_bench.cli._help import add_command
from harmony_bench.tasks import PLANNED_TASKS, task_registry

EXAMPLES = """  harmony-bench list backbones
  harmony-bench list tasks
  harmony-bench list backbones --format json
"""


def register(subparsers: Any) -> None:
    """Add the ``list`` subcommand."""
    parser = add_command(subparsers, "list", "List registered backbones or tasks.", EXAMPLES)
    parser.add_argument("what", choices=["backbones", "tasks"])
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=run)


def backbone_rows() -> list[dict[str, Any]]:
    """One row per backbone card."""
    return [
        {
            "name": card.name,
            "family": card.family,
            "timm_model": card.timm_model,
            "weights": "random init" if card.random_init else card.checkpoint.get("weights"),
            "text_tower": card.text_tower is not None,
            "description": card.description,
        }
        for card in list_cards()
    ]


def task_rows() -> list[dict[str, Any]]:
    """One row per task: registered ones first, then the planned ones."""
    registry = task_registry()
    rows = [
        {
            "name": name,
            "status": "available",
            "protocol_version": registry.get(name).protocol_version,
            "description": registry.get(name).description,
        }
        for name in registry.names()
    ]
    rows += [
        {"name": name, "status": "planned", "protocol_version": None, "description": text}
        for name, text in PLANNED_TASKS.items()
        if name not in registry
    ]
    return rows


def format_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Left-aligned columns, header first."""
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the listing."""
    if args.what == "backbones":
        rows, columns = backbone_rows(), ["name", "family", "timm_model", "weights", "description"]
    else:
        rows, columns = task_rows(), ["name", "status", "protocol_version", "description"]
    print(json.dumps(rows, indent=2) if args.format == "json" else format_text(rows, columns))
    return 0
