"""Putting a dense protocol file together with a run: size, backbone, widths, run settings, identity.

ADE20K and COCO keep one mmengine config per model size in ``benchmarks/{ade20k,coco}/``.  A run
picks the file from the backbone's width, then writes the run's specifics into it here: the card
and checkpoint, block indices, the card's mean/std, neck and head widths, work dir, seed, launcher,
AMP and, last, the preset's and the user's ``cfg_options``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harmony_bench.runner import TaskContext

SIZE_DEPTH = {"s": 12, "b": 12, "l": 24}
SIZE_OF_WIDTH = ((384, "s"), (768, "b"))  # widths up to 384 use the ViT-S protocol, up to 768 ViT-B, then L


def resolve_size(context: TaskContext) -> str:
    """``s``/``b``/``l`` from the config, or from the backbone's width when ``auto``."""
    size = str(context.config["size"]).lower()
    if size == "auto":
        width = backbone_width(context)
        size = next((name for limit, name in SIZE_OF_WIDTH if width <= limit), "l")
    return size


def backbone_width(context: TaskContext) -> int:
    """The ViT's embedding width (the card's override, else timm's naming, e.g. ``vit_small_…`` = 384)."""
    overrides = context.card.architecture.get("overrides", {})
    if overrides.get("embed_dim"):
        return int(overrides["embed_dim"])
    name = f"_{context.card.architecture['timm_model']}_"
    for key, width in (("tiny", 192), ("small", 384), ("base", 768), ("large", 1024), ("huge", 1280)):
        if f"_{key}_" in name:
            return width
    return 768


def out_indices(context: TaskContext, size: str, default: list[int]) -> list[int]:
    """The config's indices, the size file's, or evenly spaced ones for a shallower backbone."""
    if context.config.get("out_indices"):
        return list(context.config["out_indices"])
    depth = int(context.card.architecture.get("overrides", {}).get("depth") or SIZE_DEPTH[size])
    if max(default) < depth:
        return default
    return [max(round((k + 1) * depth / 4) - 1, 0) for k in range(4)]


def configure_backbone(cfg: Any, context: TaskContext, size: str) -> list[int]:
    """Card, checkpoint, indices and the card's mean/std into ``cfg``; return the neck's input widths."""
    backbone = cfg.model.backbone
    backbone.backbone = context.card.name
    backbone.checkpoint = context.options.checkpoint
    backbone.trust_checkpoint = context.options.trust_checkpoint
    pre = context.card.preprocessing
    cfg.model.data_preprocessor.mean = [255 * m for m in pre["mean"]]
    cfg.model.data_preprocessor.std = [255 * s for s in pre["std"]]
    if context.card.family == "swin":  # four stages of doubling width, no ViT pyramid
        backbone.out_indices = [0, 1, 2, 3]
        width = int(context.card.architecture.get("overrides", {}).get("embed_dim", 128))
        return [width * 2**i for i in range(4)]
    backbone.out_indices = out_indices(context, size, list(backbone.out_indices))
    return [backbone_width(context)] * 4


def finish(cfg: Any, context: TaskContext) -> None:
    """Run settings, then the preset's and the user's ``cfg_options`` (applied last)."""
    from harmony_bench.dense.mm_run import apply_amp, apply_cfg_options, launcher

    cfg.work_dir = str(context.work_dir)
    cfg.randomness = dict(seed=context.options.seed, deterministic=False)
    cfg.launcher = launcher()
    apply_amp(cfg, context.config["amp"])
    apply_cfg_options(cfg, context.config.get("cfg_options") or {})


def train(context: TaskContext, cfg: Any, root: Path, after_train_iter: Any = None) -> tuple[dict, Any, int]:
    """Guard resume by the run identity, then train and validate with mmengine.

    Returns:
        ``(metrics, evaluator metric objects, iteration the run started from)``.
    """
    import torch

    from harmony_bench.dense.mm_run import guard_resume, train_and_evaluate
    from harmony_bench.tasks.imagenet.finetune_state import run_identity

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    identity = run_identity(context, root, world, device)
    cfg.resume = guard_resume(context.work_dir, identity, bool(context.config["checkpointing"]["resume"]))
    return train_and_evaluate(cfg, after_train_iter)


def dump_config(cfg: Any, work_dir: Path) -> str:
    """Write the resolved config next to the run's checkpoints (the record links it)."""
    path = Path(work_dir) / "resolved_config.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return str(path)


def describe(context: TaskContext, build_config: Any) -> str:
    """The resolved mmengine config as Python text, with a header naming task, size and backbone."""
    header = (
        f"# {context.task.name} protocol v{context.task.protocol_version}, size {resolve_size(context)}, "
        f"backbone {context.card.name}\n"
    )
    return header + build_config(context).pretty_text + "\n"
