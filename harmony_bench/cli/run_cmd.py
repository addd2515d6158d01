"""``harmony-bench run``: one backbone × task × seed → one result record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command, parse_overrides, split_pair

EXAMPLES = """  harmony-bench run --backbone harmony --task ade20k --preset smoke   # after a smoke pretrain
  harmony-bench run --backbone timm:vit_small_patch16_224.augreg_in21k --task imagenet-knn \\
      --data-root /data/imagenet
  harmony-bench run --backbone open_clip:ViT-B-16/laion2b_s34b_b88k --task imagenet-zeroshot --data-root ...
  harmony-bench run --backbone runs/harmony-s16 --task imagenet-linear --data-root /data/imagenet
  harmony-bench run --backbone vit-tiny-random --task ade20k --preset smoke \\
      --data-root /tmp/ade/ADEChallengeData2016
  harmony-bench run --backbone ibot-vit-b16-in1k --task imagenet-knn --data-root /data/imagenet
  harmony-bench run --backbone mae-vit-b16-in1k --task coco --checkpoint ~/ckpt/mae_pretrain_vit_base.pth \\
      --data-root /data/coco --preset paper --seed 1 --output results/records
  harmony-bench run --backbone vit-tiny-random --task coco --detector mask-rcnn --preset smoke \\
      --data-root /tmp/coco
  harmony-bench run ... --set optim.lr=1e-4 --set train.batch_size=8   # override protocol values
"""


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = add_command(
        subparsers, "run", "Evaluate one backbone on one task and write a result record.", EXAMPLES
    )
    parser.add_argument(
        "--backbone",
        required=True,
        help="card name, family alias (harmony, clip, ibot, ...), timm:NAME[.TAG], open_clip:ARCH/TAG, "
        "hf-hub:ORG/NAME, a card file or a pretraining output folder (see `list backbones`)",
    )
    parser.add_argument("--task", required=True, help="task name (see `list tasks`)")
    parser.add_argument("--checkpoint", help="local checkpoint file overriding the card's source")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of the checkpoint (runs code from the file; only for files you trust)",
    )
    parser.add_argument("--data-root", type=Path, help="dataset root in the benchmark's standard layout")
    parser.add_argument(
        "--preset", help="protocol preset, e.g. smoke (tiny CPU run) or paper (the paper's protocol)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", type=Path, help="directory for the result record (default: results/records)"
    )
    parser.add_argument("--work-dir", type=Path, help="directory for logs and checkpoints of this run")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol value (dotted key, YAML value); repeatable",
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="continue from the last checkpoint in the work dir (default: the task's checkpointing.resume)",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="mmengine config overrides for the dense tasks (ade20k, coco), applied last, e.g. "
        "model.decode_head.channels=512 train_dataloader.batch_size=2",
    )
    parser.add_argument(
        "--detector",
        choices=["mask-rcnn", "cascade-mask-rcnn"],
        help="coco only: the detector (default: the protocol's cascade-mask-rcnn, the iBOT/Harmony one)",
    )
    parser.set_defaults(func=run)


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` pairs plus what ``--resume`` and ``--cfg-options`` mean in protocol terms."""
    from harmony_bench.protocols import deep_merge, get_task

    overrides = parse_overrides(args.overrides)
    if args.resume is not None:
        if "checkpointing" not in get_task(args.task).config:
            raise ValueError(
                f"--resume/--no-resume: task {args.task!r} keeps no checkpoints (it has no checkpointing "
                "settings); leave the flag out"
            )
        overrides = deep_merge(overrides, {"checkpointing": {"resume": args.resume}})
    if getattr(args, "detector", None):
        if "detector" not in get_task(args.task).config:
            raise ValueError(f"--detector is for the coco task, not {args.task!r}")
        overrides = deep_merge(overrides, {"detector": args.detector})
    if args.cfg_options:
        if "cfg_options" not in get_task(args.task).config:
            raise ValueError(
                f"--cfg-options is for the mmengine tasks (ade20k, coco), not {args.task!r}; use --set"
            )
        flat = dict(split_pair(pair, "--cfg-options") for pair in args.cfg_options)
        overrides = deep_merge(overrides, {"cfg_options": flat})
    return overrides


def run(args: argparse.Namespace) -> int:
    """Run and print where the record went (and, first, what the backbone name and data became)."""
    from harmony_bench.protocols import get_task
    from harmony_bench.runner import RunOptions, resolve
    from harmony_bench.runner import run as run_task

    if args.checkpoint and not Path(args.checkpoint).expanduser().is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist or is not a file")
    options = RunOptions(
        checkpoint=str(Path(args.checkpoint).expanduser()) if args.checkpoint else None,
        trust_checkpoint=args.trust_checkpoint,
        data_root=args.data_root,
        preset=args.preset,
        seed=args.seed,
        output=args.output,
        work_dir=args.work_dir,
        overrides=run_overrides(args),
    )
    get_task(args.task)  # an unknown task is a usage error before the backbone is resolved
    resolved, options = resolve(args.backbone, options)
    for note in resolved.notes:
        print(note, file=sys.stderr)
    path = run_task(resolved, args.task, options, announce=lambda note: print(note, file=sys.stderr))
    print(f"result record: {path}")
    return 0
