"""``harmony-bench list backbones|tasks``: what the registries hold."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harmony_bench.cli._help import add_command
from harmony_bench.listing import alias_rows, backbone_rows, format_text, store_rows, task_rows

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
