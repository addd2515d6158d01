"""``harmony-bench pretrain``: pretrain Harmony or a baseline and export a registry-loadable backbone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.cli._help import add_command

if TYPE_CHECKING:
    from harmony_bench.store import StoreEntry

EXAMPLES = """  harmony-bench pretrain --method harmony --preset smoke --output runs/smoke  # CPU, ~1-2 min
  harmony-bench pretrain --method harmony --arch vit_small_patch16_224 --data cc3m:/data/cc3m \\
      --epochs 25 --batch-size 64 --output runs/harmony-s16
  torchrun --nproc_per_node 8 -m harmony_bench pretrain --method slip --data wds:/data/cc3m-shards \\
      --batch-size 96 --output runs/slip-b16 --arch vit_base_patch16_224
  harmony-bench pretrain --method clip+ibot --data tsv:/data/captions.tsv --output runs/x --set optim.lr=1e-3
methods: harmony, clip, slip, maskclip, ibot, mae, or objectives joined with '+'
  (clip, ibot, mae, mlm, text_dist, simclr, mask_dist); defaults in benchmarks/pretrain/.
"""


def register(subparsers: Any) -> None:
    """Add the ``pretrain`` subcommand."""
    parser = add_command(
        subparsers, "pretrain", "Pretrain Harmony or a baseline (CLIP, SLIP, MaskCLIP, iBOT, MAE).", EXAMPLES
    )
    parser.add_argument(
        "--method", required=True, help="harmony | clip | slip | maskclip | ibot | mae | a+b+..."
    )
    parser.add_argument("--data", help="cc3m:DIR (jpg/txt pairs), wds:DIR (tar shards), csv:FILE or tsv:FILE")
    parser.add_argument("--output", required=True, type=Path, help="run folder (checkpoints, logs, export)")
    parser.add_argument("--preset", help="settings preset from benchmarks/pretrain/presets (e.g. smoke)")
    parser.add_argument("--arch", help="timm ViT name (default vit_small_patch16_224)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="images per process")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set optim.lr=1e-3 (repeatable)",
    )
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing OUTPUT/checkpoint.pt")
    parser.add_argument(
        "--init", help="Harmony-repo checkpoint.pth or main_vit_checkpoint.pth to continue from"
    )
    parser.add_argument("--init-text", help="Harmony-repo main_text_checkpoint.pth (with a main_vit --init)")
    parser.add_argument(
        "--trust-checkpoint", action="store_true", help="allow full unpickling of --init files"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many steps (schedules keep the full length)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, then print where the export and its card are and how to evaluate them."""
    from harmony_bench.pretrain.smoke import check_losses_decrease
    from harmony_bench.pretrain.trainer import RunOptions, train

    opts = RunOptions(
        method=args.method,
        output=args.output,
        data=args.data,
        preset=args.preset,
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        sets=args.sets,
        resume=not args.no_resume,
        init=args.init,
        init_text=args.init_text,
        trust_checkpoint=args.trust_checkpoint,
        device=args.device,
        max_steps=args.max_steps,
    )
    summary = train(opts)
    if summary.get("card") in (None, "None"):
        return 0  # not the main process
    card = Path(summary["card"])
    print(json.dumps({k: summary[k] for k in ("steps", "last", "skipped_images")}, indent=2))
    if args.preset == "smoke" and not args.max_steps:  # a run cut short by --max-steps is not judged
        print(check_losses_decrease(args.output / "log.jsonl"))
    print(f"exported {summary['export']} with card {card}")
    entry = register_in_store(card, Path(summary["export"]), args.output, opts.method, int(summary["steps"]))
    alias = (
        f"--backbone {entry.method} (the newest {entry.method} export), " if entry.method == "harmony" else ""
    )
    print(
        f"evaluate: harmony-bench run {alias}--backbone {entry.name} or --backbone {args.output} "
        "--task imagenet-zeroshot ... (add --preset smoke to run on cached synthetic data)"
    )
    return 0


def register_in_store(card: Path, weights: Path, output: Path, method: str, step: int) -> StoreEntry:
    """Register the export in the user's backbone store and say where (and what it replaced)."""
    from harmony_bench import store

    replaced = store.previous_owner(card.stem, output)
    entry = store.register_export(card, weights, output, method, step)
    print(f"registered {entry.name} in the backbone store {store.backbones_dir()}")
    if replaced is not None:
        print(f"  (it replaces the entry of the same name from {replaced.run_folder})")
    return entry
