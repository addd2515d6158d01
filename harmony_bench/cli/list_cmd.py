"""``harmony-bench list backbones|tasks``: what the registries hold."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harmony_bench.cards import backbone_aliases, list_cards
from harmony_bench.cli._help import add_command
from harmony_bench.protocols import PLANNED_TASKS, task_registry

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


def alias_rows() -> list[dict[str, Any]]:
    """One row per family alias: the card it names and what it means."""
    return [
        {"alias": a.name, "card": a.card, "means": " ".join(a.means.split())}
        for a in sorted(backbone_aliases().values(), key=lambda a: a.name)
    ]


def store_rows() -> list[dict[str, Any]]:
    """One row per export registered in the user's backbone store, newest last."""
    from harmony_bench import store

    return [
        {
            "name": e.name,
            "method": e.method,
            "step": e.step,
            "registered": e.registered[:19] + "Z",
            "source_folder": e.run_folder if e.available else f"{e.run_folder} (missing)",
        }
        for e in store.entries()
    ]


OTHER_FORMS = """other --backbone forms:
  timm:NAME[.TAG]     a timm model with its pretrained weights, e.g. timm:vit_small_patch16_224.augreg_in21k
  open_clip:ARCH/TAG  an open_clip model, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k
  hf-hub:ORG/NAME     a timm or open_clip model on the Hugging Face hub (or open_clip:hf-hub:ORG/NAME)
  path/to/card.yaml   a card file
  runs/FOLDER         a `harmony-bench pretrain` output folder (its newest export)"""


def run(args: argparse.Namespace) -> int:
    """Print the listing."""
    from harmony_bench import store

    if args.what == "tasks":
        rows, columns = task_rows(), ["name", "status", "protocol_version", "description"]
        print(json.dumps(rows, indent=2) if args.format == "json" else format_text(rows, columns))
        return 0
    rows, columns = backbone_rows(), ["name", "family", "timm_model", "weights", "description"]
    aliases, exports = alias_rows(), store_rows()
    if args.format == "json":
        print(json.dumps({"cards": rows, "aliases": aliases, "store": exports}, indent=2))
        return 0
    print(format_text(rows, columns))
    print("\nfamily aliases (backbones/_aliases.yaml):")
    print(format_text(aliases, ["alias", "card", "means"]))
    print(f"\nregistered pretraining exports (backbone store {store.backbones_dir()}):")
    print(
        format_text(exports, ["name", "method", "step", "registered", "source_folder"])
        if exports
        else "  none yet"
    )
    print("\n" + OTHER_FORMS)
    return 0
