"""``harmony-bench run --task ade20k``: the protocol file for the backbone's size, run by mmengine.

:func:`build_config` is the one place the mmengine config is put together (no hidden registry magic):
the size's protocol file from ``benchmarks/ade20k/``, then the backbone (card, checkpoint, indices,
mean/std), neck and head widths, the data root, the work dir, AMP, and last the preset's and the
user's ``cfg_options``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony_bench.dense import protocol
from harmony_bench.runner import TaskContext, TaskOutcome
from harmony_bench.tasks.ade20k.data import resolve_root, split_sizes

# Test hook: called as (iteration, work_dir) after every training iteration (tests simulate crashes).
_after_train_iter = None


def preflight(context: TaskContext) -> None:
    """Reject a missing or mis-laid dataset, an unknown size or a config that cannot be built, up front."""
    resolve_root(context.options.data_root)
    size = protocol.resolve_size(context)
    if size not in context.config["mm_config"]:
        raise ValueError(
            f"ade20k size must be one of {sorted(context.config['mm_config'])} or auto, got {size!r}"
        )
    build_config(context)  # e.g. a batch that does not split over the processes, a bad --cfg-options key


def build_config(context: TaskContext, root: Path | None = None) -> Any:
    """The complete mmengine config of this run (``root``: the checked ADEChallengeData2016 folder)."""
    from mmengine.config import Config

    size = protocol.resolve_size(context)
    cfg = Config.fromfile(str(Path(context.task.path).parent / context.config["mm_config"][size]))
    widths = protocol.configure_backbone(cfg, context, size)
    if context.card.family == "swin":
        cfg.model.neck = None
    else:
        cfg.model.neck.embed_dim = widths[0]
        cfg.model.decode_head.channels = widths[0]  # UPerHead channels = embed dim (iBOT)
    cfg.model.decode_head.in_channels = widths
    cfg.model.auxiliary_head.in_channels = widths[2]
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(root) if root is not None else "<--data-root>"
    protocol.finish(cfg, context)
    _propagate_norm(cfg)
    return cfg


def _propagate_norm(cfg: Any) -> None:
    """A preset's ``norm_cfg`` reaches every module that used it (mmengine bound it when loading)."""
    for part in ("neck", "decode_head", "auxiliary_head"):
        module = cfg.model.get(part)
        if module is not None and "norm_cfg" in module:
            module.norm_cfg = cfg.norm_cfg


def describe(context: TaskContext) -> str:
    """The resolved mmengine config (``harmony-bench protocol show ade20k``)."""
    return protocol.describe(context, build_config)


def run(context: TaskContext) -> TaskOutcome:
    """Train UperNet on ADE20K with mmengine and return mIoU, mAcc, aAcc and per-class IoU."""
    from harmony_bench.dense import register_into
    from harmony_bench.results import metric

    register_into("mmseg")
    root = resolve_root(context.options.data_root)
    cfg = build_config(context, root)
    metrics, evaluators, start_iter = protocol.train(context, cfg, root, _after_train_iter)
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
    from harmony_bench.data.imagenet import read_manifest

    manifest = read_manifest(root) or read_manifest(root.parent)
    return {
        "name": "ade20k-synthetic" if manifest else "ade20k",
        "root": str(root.resolve()),
        "synthetic": manifest is not None,
        "splits": split_sizes(root),
        "manifest": manifest,
    }


run.preflight = preflight  # type: ignore[attr-defined]
