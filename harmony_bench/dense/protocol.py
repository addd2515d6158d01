"""Putting a dense protocol file together with a run: size, backbone, widths, run settings, identity.

ADE20K and COCO keep one mmengine config per model size in ``benchmarks/{ade20k,coco}/``.  A run
picks the file from the backbone's width, then writes the run's specifics into it here: the card
and checkpoint, block indices, the card's mean/std, neck and head widths, work dir, seed, launcher,
AMP and, last, the preset's and the user's ``cfg_options``.

Each protocol file cites its values in a ``sources`` dict variable (dotted mmengine path -> citation,
merged through ``_base_`` so a size file's entry replaces the base's).  :func:`take_sources` pops it
right after the file is read, so the Runner and the dumped config never see it; :func:`hyperparameters`
pairs every cited path with its resolved value for ``protocol show`` and benchmarks/PROTOCOLS.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.runtime import default_device_type, world_size
from harmony_bench.sources import MISSING, lookup

if TYPE_CHECKING:
    from harmony_bench.runner import TaskContext

SOURCES_VARIABLE = "sources"
# The card a protocol is resolved for when none is named (protocol show, the sheet): the iBOT ViT of
# that size (ImageNet mean/std, the protocol's own backbone family).
SIZE_CARDS = {"s": "ibot-vit-s16-in1k", "b": "ibot-vit-b16-in1k", "l": "ibot-vit-l16-in1k"}
SIZE_DEPTH = {"s": 12, "b": 12, "l": 24}
NAME_DEPTH = (("tiny", 12), ("small", 12), ("base", 12), ("large", 24), ("huge", 32), ("giant", 40))
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


def backbone_depth(context: TaskContext, size: str) -> int:
    """The ViT's number of blocks (the card's override, else timm's naming, else the size's)."""
    overrides = context.card.architecture.get("overrides", {})
    if overrides.get("depth"):
        return int(overrides["depth"])
    name = f"_{context.card.architecture['timm_model']}_"
    return next((depth for key, depth in NAME_DEPTH if f"_{key}_" in name), SIZE_DEPTH[size])


def out_indices(context: TaskContext, size: str, default: list[int]) -> list[int]:
    """The config's indices, the size file's, or evenly spaced ones for a shallower backbone."""
    if context.config.get("out_indices"):
        return list(context.config["out_indices"])
    depth = backbone_depth(context, size)
    if max(default) < depth:
        return default
    return [max(round((k + 1) * depth / 4) - 1, 0) for k in range(4)]


def configure_backbone(cfg: Any, context: TaskContext, size: str) -> list[int]:
    """Card, checkpoint, indices, mean/std and layer-decay depth into ``cfg``; return the neck's input widths.

    The layer-decay depth is the backbone's own (12 for ViT-S/B, 24 for ViT-L, 4 stages for Swin), so a
    smaller test backbone or a deeper one under the same size file still gets one lr scale per block.
    """
    backbone = cfg.model.backbone
    backbone.backbone = context.card.name
    backbone.checkpoint = context.options.checkpoint
    backbone.trust_checkpoint = context.options.trust_checkpoint
    pre = context.card.preprocessing
    cfg.model.data_preprocessor.mean = [255 * m for m in pre["mean"]]
    cfg.model.data_preprocessor.std = [255 * s for s in pre["std"]]
    decay = cfg.get("optim_wrapper", {}).get("paramwise_cfg", {})
    if context.card.family == "swin":  # four stages of doubling width, no ViT pyramid
        backbone.out_indices = [0, 1, 2, 3]
        if "num_layers" in decay:
            decay.num_layers = 4
        width = int(context.card.architecture.get("overrides", {}).get("embed_dim", 128))
        return [width * 2**i for i in range(4)]
    backbone.out_indices = out_indices(context, size, list(backbone.out_indices))
    if "num_layers" in decay:
        decay.num_layers = backbone_depth(context, size)
    return [backbone_width(context)] * 4


def finish(cfg: Any, context: TaskContext) -> None:
    """Run settings, then the preset's and the user's ``cfg_options`` (applied last).

    A config with a top-level ``total_batch_size`` (the protocol's images per iteration) gets
    ``train_dataloader.batch_size`` = that total over the number of processes, so 1, 4 or 8 GPUs all
    train the protocol's batch, unless ``cfg_options`` set ``train_dataloader.batch_size`` itself.
    """
    from harmony_bench.dense.engine import apply_amp, apply_cfg_options, launcher

    cfg.work_dir = str(context.work_dir)
    cfg.randomness = dict(seed=context.options.seed, deterministic=False)
    cfg.launcher = launcher()
    apply_amp(cfg, context.config["amp"])
    options = context.config.get("cfg_options") or {}
    apply_cfg_options(cfg, options)
    _poly_over_the_run(cfg, options)
    # the user's batch wins, given dotted (``train_dataloader.batch_size=8``) or nested (a suite's ``set:``)
    if "total_batch_size" in cfg and lookup(options, "train_dataloader.batch_size") is MISSING:
        cfg.train_dataloader.batch_size = per_process_batch(int(cfg.total_batch_size))


def _poly_over_the_run(cfg: Any, options: dict[str, Any]) -> None:
    """The poly curve spans the run, as mmcv 1.x's (``runner.max_iters``): its ``end`` follows max_iters.

    A shorter or longer run (``--cfg-options train_cfg.max_iters=N``) therefore decays over its own length,
    as upstream's hook would; an ``end`` the user sets to something else is refused (the lr would stop short
    of ``min_lr`` or sit flat after ``end``, and the record would not say so).
    """
    max_iters = cfg.get("train_cfg", {}).get("max_iters")
    schedulers = cfg.get("param_scheduler") or []
    for index, scheduler in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        if scheduler.get("type") != "MMCV1PolyLR" or max_iters is None:
            continue
        if lookup(options, f"param_scheduler.{index}.end") is not MISSING and scheduler["end"] != max_iters:
            raise ValueError(
                f"--cfg-options param_scheduler.{index}.end={scheduler['end']} differs from "
                f"train_cfg.max_iters={max_iters}: mmcv 1.x's poly schedule spans the whole run; set "
                "train_cfg.max_iters alone (the schedule follows it)"
            )
        scheduler["end"] = int(max_iters)


def per_process_batch(total: int) -> int:
    """``total`` images per iteration split over ``WORLD_SIZE`` processes (torchrun / Slurm)."""
    world = world_size()
    per_process, rest = divmod(total, world)
    if rest or not per_process:
        raise ValueError(
            f"the protocol's batch of {total} images does not split over {world} processes: run on a "
            f"number of GPUs that divides {total}, or set the per-GPU batch with "
            "--cfg-options train_dataloader.batch_size=N (this changes the protocol)"
        )
    return per_process


def train(context: TaskContext, cfg: Any, root: Path) -> tuple[dict, Any, int]:
    """Guard resume by the run identity, then train and validate with mmengine.

    Returns:
        ``(metrics, evaluator metric objects, iteration the run started from)``.
    """
    import torch

    from harmony_bench.dense.engine import guard_resume, train_and_evaluate
    from harmony_bench.run_identity import run_identity

    device = default_device_type()
    identity = run_identity(context, root, world_size(), device)
    cfg.resume = guard_resume(context.work_dir, identity, bool(context.config["checkpointing"]["resume"]))
    threads, previous = context.config.get("cpu_threads"), torch.get_num_threads()
    if threads and device == "cpu":  # tiny smoke models: thread barriers cost more than they save
        torch.set_num_threads(int(threads))
    try:
        return train_and_evaluate(cfg)
    finally:
        torch.set_num_threads(previous)


def take_sources(cfg: Any) -> dict[str, str]:
    """Pop the protocol file's ``sources`` (dotted mmengine path -> citation) out of ``cfg``."""
    found = cfg.pop(SOURCES_VARIABLE, None) or {}
    return {str(key): str(value) for key, value in dict(found).items()}


def hyperparameters(context: TaskContext, build_config: Any) -> list[tuple[str, Any, str]]:
    """``(mmengine path, resolved value, citation)`` for every path the protocol file cites.

    A path the preset or the user overrides through ``cfg_options`` (the override's key covers the
    path, or lies below it) is cited from the task's YAML sources for ``cfg_options.<key>`` instead,
    and every override key gets a row of its own even when the file does not cite it.
    """
    from harmony_bench.sources import MISSING, covers, find_source, lookup

    file_sources: dict[str, str] = {}
    cfg = build_config(context, sources=file_sources).to_dict()
    options = dict(context.config.get("cfg_options") or {})
    tables = context.task.sources_for(context.options.preset)
    paths = [*file_sources, *(key for key in options if key not in file_sources)]
    rows = []
    for path in paths:
        value = lookup(cfg, path)
        override = next((key for key in options if covers(key, path) or covers(path, key)), None)
        if override is not None:
            found = find_source(f"cfg_options.{override}", tables)
        else:
            found = find_source(path, [file_sources])
        rows.append((path, None if value is MISSING else value, found[1] if found else "uncited"))
    return rows


def dump_config(cfg: Any, work_dir: Path) -> str:
    """Write the resolved config next to the run's checkpoints (the record links it)."""
    path = Path(work_dir) / "resolved_config.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg.dump(str(path))
    return str(path)


def describe(context: TaskContext, build_config: Any) -> str:
    """The resolved mmengine config as Python text, with every cited hyper-parameter and its source.

    A header names task, size and backbone; a footer lists the cited values with their citations.
    """
    from harmony_bench.sources import render_value

    header = (
        f"# {context.task.name} protocol v{context.task.protocol_version}, size {resolve_size(context)}, "
        f"backbone {context.card.name}\n"
    )
    footer = ["", "# Hyper-parameters and their sources (benchmarks/PROTOCOLS.md has every preset):"]
    footer += [
        f"#   {path} = {render_value(value)}\n#       <- {source}"
        for path, value, source in hyperparameters(context, build_config)
    ]
    return header + build_config(context).pretty_text + "\n".join(footer) + "\n"
