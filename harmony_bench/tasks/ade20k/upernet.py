"""``harmony-bench run --task ade20k``: the protocol file for the backbone's size, run by mmengine.

:func:`build_config` is the one place the mmengine config is put together (no hidden registry magic):
the size's protocol file from ``benchmarks/ade20k/``, then the backbone (card, checkpoint, indices,
mean/std), neck and head widths, the data root, the work dir, AMP, and last the preset's and the
user's ``cfg_options``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmony_bench.dense import protocol
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.tasks.ade20k.data import resolve_root, split_sizes


def preflight(context: TaskContext) -> None:
    """Refuse a missing or mis-laid dataset, bad annotations, an unknown size or a bad config, up front."""
    check_inputs(context, build_config)


def check_inputs(context: TaskContext, build: Callable[[TaskContext], Any]) -> None:
    """The checks of every ADE20K protocol: dataset, annotations, then ``build(context)``."""
    from harmony_bench.paths import default_results_dir
    from harmony_bench.tasks.ade20k.validate import cache_dir, check_dataset

    root = resolve_root(context.options.data_root)
    check_dataset(root, cache_dir(context.options.output or default_results_dir()))
    build(context)  # e.g. a batch that does not split over the processes, a bad --cfg-options key


def protocol_file(context: TaskContext) -> Path:
    """``benchmarks/ade20k/<the size's file>`` for this run's size and preset."""
    size, files = protocol.resolve_size(context), context.config["mm_config"]
    if size not in files:
        raise ValueError(f"{context.task.name} size must be one of {sorted(files)} or auto, got {size!r}")
    if not files[size]:
        preset = context.options.preset or context.task.default_preset
        sizes = sorted(name for name, file in files.items() if file)
        raise ValueError(
            f"preset {preset!r} of {context.task.name} has no ViT-{size.upper()} protocol (its source runs "
            f"only {', '.join(f'ViT-{s.upper()}' for s in sizes)}); use --preset paper for this backbone"
        )
    return Path(context.task.path).parent / files[size]


def build_config(
    context: TaskContext, root: Path | None = None, sources: dict[str, str] | None = None
) -> Any:
    """The complete mmengine config of this run (``root``: the checked ADEChallengeData2016 folder).

    The protocol file's ``sources`` are popped; pass a dict as ``sources`` to receive them.
    """
    from mmengine.config import Config

    size = protocol.resolve_size(context)
    cfg = Config.fromfile(str(protocol_file(context)))
    cited = protocol.take_sources(cfg)
    if sources is not None:
        sources.update(cited)
    widths = protocol.configure_backbone(cfg, context, size)
    if context.card.family == "swin":
        cfg.model.neck = None
    else:
        cfg.model.neck.embed_dim = widths[0]
        cfg.model.decode_head.channels = widths[0]  # UPerHead channels = embed dim (iBOT)
    cfg.model.decode_head.in_channels = widths
    cfg.model.auxiliary_head.in_channels = widths[2]
    set_data_root(cfg, root)
    protocol.finish(cfg, context)
    _propagate_norm(cfg)
    return cfg


def set_data_root(cfg: Any, root: Path | None) -> None:
    """Every loader reads the checked ADEChallengeData2016 folder (a placeholder when none is given)."""
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(root) if root is not None else "<--data-root>"


def _propagate_norm(cfg: Any) -> None:
    """A preset's ``norm_cfg`` reaches every module that used it (mmengine bound it when loading)."""
    for part in ("neck", "decode_head", "auxiliary_head"):
        module = cfg.model.get(part)
        if module is not None and "norm_cfg" in module:
            module.norm_cfg = cfg.norm_cfg


def describe(context: TaskContext) -> str:
    """The resolved mmengine config (``harmony-bench protocol show ade20k``)."""
    return protocol.describe(context, build_config)


def protocol_rows(context: TaskContext) -> list[tuple[str, Any, str]]:
    """Every cited hyper-parameter of the resolved mmengine config (benchmarks/PROTOCOLS.md)."""
    return protocol.hyperparameters(context, build_config)


def sheet_variants(spec: Any, preset: str) -> list[tuple[str, dict[str, Any], str]]:
    """``(label, overrides, card)`` of every protocol a preset defines: one per size that has a file."""
    if preset == "smoke":
        return [("vit-tiny-random", {}, "vit-tiny-random")]
    files = spec.resolve_config(preset)["mm_config"]
    return [
        (f"ViT-{size.upper()}", {"size": size}, protocol.SIZE_CARDS[size]) for size in files if files[size]
    ]


def run(context: TaskContext) -> TaskOutcome:
    """Train UperNet on ADE20K with mmengine and return mIoU, mAcc, aAcc and per-class IoU."""
    return train_segmentor(context, build_config)


def train_segmentor(context: TaskContext, build: Callable[..., Any]) -> TaskOutcome:
    """Train the segmentor ``build(context, root)`` configures; its mIoU, mAcc, aAcc and per-class IoU."""
    from harmony_bench.dense import register_into
    from harmony_bench.results import metric

    register_into("mmseg")
    root = resolve_root(context.options.data_root)
    cfg = build(context, root)
    metrics, evaluators, start_iter = protocol.train(context, cfg, root)
    seg = evaluators[0]
    result = {name: metric(round(float(metrics[name]), 4), unit="%") for name in ("mIoU", "mAcc", "aAcc")}
    result["constant_baseline_mIoU"] = metric(seg.constant_baseline_mIoU, unit="%")
    result["per_class"] = {
        name: {key: metric(value, unit="%") for key, value in scores.items()}
        for name, scores in seg.per_class.items()
    }
    artifacts = {
        "mm_config": protocol.dump_config(cfg, context.work_dir),
        "resumed_from_iter": str(start_iter),
    }
    return TaskOutcome(metrics=result, dataset=_dataset_identity(root), artifacts=artifacts)


def _dataset_identity(root: Path) -> dict[str, Any]:
    from harmony_bench.data.identity import dataset_block

    return dataset_block(
        root, "ade20k", "ade20k-synthetic", manifest_in_parent=True, splits=split_sizes(root)
    )


RUNNER = TaskRunner(run=run, preflight=preflight)
