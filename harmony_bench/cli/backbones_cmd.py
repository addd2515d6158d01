"""``harmony-bench backbones list|show|inspect|convert``: the backbone registry from the command line."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench backbones list
  harmony-bench backbones show slip-vit-s16-yfcc15m-25ep
  harmony-bench backbones inspect ~/ckpt/checkpoint.pth --format json
  harmony-bench backbones convert harmony-vit-b16-cc3m --checkpoint out/main_vit_checkpoint.pth \\
      --text-checkpoint out/main_text_checkpoint.pth --out harmony-b16.safetensors
"""


def register(subparsers: Any) -> None:
    """Add the ``backbones`` subcommand and its actions."""
    parser = add_command(
        subparsers, "backbones", "Inspect backbone cards and checkpoints; export weights.", EXAMPLES
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = add_command(
        actions, "list", "List every backbone card.", "  harmony-bench backbones list --format json\n"
    )
    listing.add_argument("--format", choices=["text", "json"], default="text")
    listing.set_defaults(func=run_list)

    show = add_command(
        actions,
        "show",
        "Print one card and where its checkpoint is cached.",
        "  harmony-bench backbones show clip-vit-b16-openai\n"
        "  harmony-bench backbones show harmony\n"
        "  harmony-bench backbones show timm:vit_small_patch16_224.augreg_in21k\n",
    )
    show.add_argument(
        "name", help="a card name, alias, timm:/open_clip:/hf-hub: name, card file or run folder"
    )
    show.add_argument("--format", choices=["yaml", "json"], default="yaml")
    show.set_defaults(func=run_show)

    inspect = add_command(
        actions,
        "inspect",
        "Describe a checkpoint file and list the cards whose converters would load it cleanly.",
        "  harmony-bench backbones inspect mae_pretrain_vit_base.pth\n"
        "  harmony-bench backbones inspect checkpoint.pth --trust-checkpoint --format json\n",
    )
    inspect.add_argument("checkpoint", type=Path, metavar="CKPT")
    inspect.add_argument("--format", choices=["text", "json"], default="text")
    inspect.add_argument("--card", action="append", default=[], help="only try these cards (repeatable)")
    _trust_flag(inspect)
    inspect.set_defaults(func=run_inspect)

    convert = add_command(
        actions,
        "convert",
        "Load a checkpoint through a card (exactly, or fail) and export it as timm-layout safetensors.",
        "  harmony-bench backbones convert ibot-vit-b16-in1k --checkpoint checkpoint_teacher.pth "
        "--out ibot-b16.safetensors\n",
    )
    convert.add_argument("name", help="backbone card")
    convert.add_argument(
        "--checkpoint",
        help="checkpoint file or URL in the card's format (default: the card's source, cached)",
    )
    convert.add_argument(
        "--text-checkpoint", help="separate text-tower file (Harmony-repo main_text_checkpoint.pth)"
    )
    convert.add_argument(
        "--out", required=True, type=Path, help="output .safetensors file (never overwritten)"
    )
    _trust_flag(convert)
    convert.set_defaults(func=run_convert)


def _trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of the file (it can run code); only for files from a source you trust",
    )


def run_list(args: argparse.Namespace) -> int:
    """One row per card."""
    from harmony_bench.listing import backbone_rows, format_text

    rows = [
        {
            **{k: row[k] for k in ("name", "family", "timm_model", "converter")},
            "weights": row["availability"],
            "text": "yes" if row["text_tower"] else "no",
        }
        for row in backbone_rows()
    ]
    columns = ["name", "family", "timm_model", "converter", "weights", "text"]
    print(json.dumps(rows, indent=2) if args.format == "json" else format_text(rows, columns))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """The card as data (any --backbone name), where its weights come from, and whether they are cached."""
    from harmony_bench.models.checkpoint_io import cache_path, is_remote, source_url
    from harmony_bench.models.hub_cards import hub_weights, is_hub_source
    from harmony_bench.models.hub_files import HubFileMissing
    from harmony_bench.models.names import resolve_backbone

    resolved = resolve_backbone(args.name, register=False, need_weights=False)
    card = resolved.card
    data = {k: v for k, v in card.to_dict().items() if v not in (None, [], {})}
    if resolved.how != "card":
        data["name_resolution"] = {"typed": args.name, "as": resolved.how, "notes": list(resolved.notes)}
        if resolved.checkpoint:
            data["name_resolution"]["weights"] = resolved.checkpoint
    source = card.checkpoint.get("source")
    if is_hub_source(source):
        try:
            data["resolved"] = {"weights": str(hub_weights(source, local_only=True)), "cached": True}
        except HubFileMissing as exc:
            data["resolved"] = {"cached": False, "first run": str(exc).split(" Details: ")[0]}
    elif source and is_remote(source):
        target = cache_path(source)
        data["resolved"] = {"url": source_url(source), "cache_path": str(target), "cached": target.is_file()}
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, width=110).rstrip())
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """Container, layout, parameter count, and a clean/no verdict per card."""
    from harmony_bench.cards import get_card
    from harmony_bench.models.inspection import describe_checkpoint, fit_cards

    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {args.checkpoint}")
    info = describe_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
    cards = [get_card(name) for name in args.card] or None
    info["cards"] = fit_cards(args.checkpoint, trust=args.trust_checkpoint, cards=cards)
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    print(f"file:       {info['path']} ({info['size_bytes']:,} bytes, {info['format']})")
    print(f"sha256:     {info['sha256']}")
    print(f"tensors:    {info['tensors']} ({info['parameters']:,} values)")
    if info.get("note"):
        print(f"note:       {info['note']}")
    print("container:" + ("" if info["container"] else "  (bare state dict)"))
    for key, text in info["container"].items():
        print(f"  {key}: {text}")
    print("layout (leading key components):")
    for prefix, count in info["layout"].items():
        print(f"  {prefix:<40} {count}")
    clean = [c for c in info["cards"] if c["status"] == "clean"]
    print(f"cards that load it cleanly ({len(clean)}):" + ("" if clean else "  none"))
    for row in clean:
        print(f"  {row['card']:<32} via {row['converter']}: {row['detail']}")
    if not clean:
        print("why the cards do not fit (first reason each):")
        for row in info["cards"]:
            print(f"  {row['card']:<32} {row['detail'][:160]}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Exact load, then an atomic safetensors export with provenance metadata."""
    from safetensors.torch import save_file

    from harmony_bench import __version__, load_backbone

    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {args.out}")
    if args.out.exists():
        raise FileExistsError(f"{args.out} exists; refusing to overwrite it")
    backbone = load_backbone(
        args.name,
        args.checkpoint,
        text_checkpoint=args.text_checkpoint,
        trust_checkpoint=args.trust_checkpoint,
    )
    tensors = {k: v.contiguous() for k, v in backbone.model.state_dict().items()}
    if backbone.text_model is not None:
        tensors.update({f"text.{k}": v.contiguous() for k, v in backbone.text_model.state_dict().items()})
    metadata = {
        "harmony_bench_version": __version__,
        "card": backbone.card.name,
        "timm_model": backbone.card.timm_model,
        "source": str(backbone.report.source),
        "source_sha256": str(backbone.report.sha256),
        "converter": str(backbone.report.converter),
        "layout": "timm image model; open_clip TextTransformer under text.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=f".{args.out.name}.", suffix=".partial")
    os.close(handle)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.link(tmp, args.out)  # no-clobber publish: fails if --out appeared meanwhile
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(backbone.report.summary)
    print(f"wrote {args.out} ({len(tensors)} tensors); load it with a card whose converter is 'timm'")
    return 0
