"""``harmony-bench run --task coco [--detector mask-rcnn|cascade-mask-rcnn]``, run by mmengine.

:func:`build_config` puts the run's mmengine config together in one place: the protocol file for the
detector, size and schedule from ``benchmarks/coco/``, then the backbone (card, checkpoint, indices,
mean/std), the pyramid and FPN widths, the class names of the annotation files (80 for COCO; the
heads get as many outputs), data root and evaluator, the work dir, AMP, and last the preset's and the
user's ``cfg_options``.  Metrics are mmdet's ``CocoMetric`` (pycocotools' COCOeval).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony_bench.dense import protocol
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.tasks.coco.data import annotation_file, check_root, split_sizes
from harmony_bench.tasks.coco.heads import shrink_heads

DETECTORS = ("mask-rcnn", "cascade-mask-rcnn")
# CocoMetric key suffix -> our metric name
AP_NAMES = {"mAP": "AP", "mAP_50": "AP50", "mAP_75": "AP75", "mAP_s": "APs", "mAP_m": "APm", "mAP_l": "APl"}
DETECTIONS = "detections"  # CocoMetric writes detections.bbox.json / detections.segm.json in the work dir


def preflight(context: TaskContext) -> None:
    """Reject an unknown detector/schedule and a missing or inconsistent COCO root before anything runs."""
    protocol_file(context)
    check_root(context.options.data_root)


def protocol_file(context: TaskContext) -> Path:
    """``benchmarks/coco/<detector>_vit-<size>_coco_<schedule>.py`` for this run."""
    detector, schedule = context.config["detector"], context.config["schedule"]
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    name = context.config["mm_config"].format(
        detector=detector, size=protocol.resolve_size(context), schedule=schedule
    )
    path = Path(context.task.path).parent / name
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob(f"{detector}_vit-*.py"))
        raise ValueError(
            f"no COCO protocol file {name} ({detector}, schedule {schedule}); available: {available}"
        )
    return path


def build_config(
    context: TaskContext,
    root: Path | None = None,
    classes: list[str] | None = None,
    sources: dict[str, str] | None = None,
) -> Any:
    """The complete mmengine config of this run.

    The protocol file's ``sources`` are popped; pass a dict as ``sources`` to receive them.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(protocol_file(context)))
    cited = protocol.take_sources(cfg)
    if sources is not None:
        sources.update(cited)
    widths = protocol.configure_backbone(cfg, context, protocol.resolve_size(context))
    pyramid, fpn = cfg.model.neck
    fpn.in_channels = widths
    if context.card.family == "swin":
        cfg.model.neck = fpn
        cfg.model.backbone.img_size = None  # a ViT position grid; Swin takes the batches as they come
    else:
        pyramid.embed_dim = widths[0]
    if classes is not None:
        _set_classes(cfg, classes)
    data_root = str(root) if root is not None else "<--data-root>"
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = str(annotation_file(Path(data_root), "val2017"))
        evaluator.outfile_prefix = str(Path(context.work_dir) / DETECTIONS)  # kept for re-scoring
    shrink_heads(cfg, context.config.get("heads"))
    protocol.finish(cfg, context)
    _propagate_norm(cfg)
    return cfg


def _set_classes(cfg: Any, classes: list[str]) -> None:
    """The annotation files' categories become the datasets' classes and the heads' outputs."""
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.metainfo = dict(classes=tuple(classes))
    roi = cfg.model.roi_head
    heads = roi.bbox_head if isinstance(roi.bbox_head, list) else [roi.bbox_head]
    for head in [*heads, roi.mask_head]:
        head.num_classes = len(classes)


def _propagate_norm(cfg: Any) -> None:
    """A preset's ``norm_cfg`` reaches the pyramid and the 4conv1fc heads (bound when the file loaded)."""
    if isinstance(cfg.model.neck, list):
        cfg.model.neck[0].norm_cfg = cfg.norm_cfg
    heads = cfg.model.roi_head.bbox_head
    for head in heads if isinstance(heads, list) else [heads]:
        if "norm_cfg" in head:
            head.norm_cfg = cfg.norm_cfg


def describe(context: TaskContext) -> str:
    """The resolved mmengine config (``harmony-bench protocol show coco --set detector=...``)."""
    return protocol.describe(context, build_config)


def protocol_rows(context: TaskContext) -> list[tuple[str, Any, str]]:
    """Every cited hyper-parameter of the resolved mmengine config (benchmarks/PROTOCOLS.md)."""
    return protocol.hyperparameters(context, build_config)


def sheet_variants(spec: Any, preset: str) -> list[tuple[str, dict[str, Any], str]]:
    """``(label, overrides, card)`` of every protocol a preset defines: one per size/detector/schedule file.

    The smoke preset is shown for the tiny random ViT it is made for (which runs the ViT-S files).
    """
    config = spec.resolve_config(preset)
    detectors = ("cascade-mask-rcnn", "mask-rcnn")  # the iBOT/Harmony protocol first
    if preset == "smoke":
        return [(f"{d} {config['schedule']}", {"detector": d}, "vit-tiny-random") for d in detectors]
    variants = []
    for size in ("s", "b"):
        for detector in detectors:
            for schedule in ("1x", "3x"):
                name = config["mm_config"].format(detector=detector, size=size, schedule=schedule)
                if (Path(spec.path).parent / name).is_file():
                    overrides = {"size": size, "detector": detector, "schedule": schedule}
                    label = f"{detector} {schedule} ViT-{size.upper()}"
                    variants.append((label, overrides, protocol.SIZE_CARDS[size]))
    return variants


def run(context: TaskContext) -> TaskOutcome:
    """Train the detector on COCO with mmengine and return box and mask AP (AP, AP50, AP75, APs/m/l)."""
    from harmony_bench.dense import register_into

    register_into("mmdet")
    root, classes = check_root(context.options.data_root)
    cfg = build_config(context, root, classes)
    metrics, _, start_iter = protocol.train(context, cfg, root)
    artifacts = {
        "mm_config": protocol.dump_config(cfg, context.work_dir),
        **{
            f"detections_{kind}": f"{cfg.val_evaluator.outfile_prefix}.{kind}.json"
            for kind in ("bbox", "segm")
        },
        "resumed_from_iter": str(start_iter),
        "detector": context.config["detector"],
    }
    return TaskOutcome(metrics=record_metrics(metrics), dataset=_dataset_identity(root), artifacts=artifacts)


def record_metrics(metrics: dict[str, float]) -> dict[str, Any]:
    """CocoMetric's ``coco/{bbox,segm}_mAP*`` (fractions, 3 decimals) → ``{bbox,segm}: {AP, ...}`` in %."""
    from harmony_bench.results import metric

    def percent(value: float) -> float | None:  # COCOeval's -1: no objects of that size in the set
        return None if value < 0 else round(100 * float(value), 2)

    # CocoMetric reports nothing for a kind when the model detected nothing at all: that is AP 0
    metrics = {f"coco/{kind}_{key}": 0.0 for kind in ("bbox", "segm") for key in AP_NAMES} | dict(metrics)

    return {
        kind: {
            name: metric(percent(metrics[f"coco/{kind}_{key}"]), unit="%") for key, name in AP_NAMES.items()
        }
        for kind in ("bbox", "segm")
    }


def _dataset_identity(root: Path) -> dict[str, Any]:
    from harmony_bench.data.identity import dataset_block

    return dataset_block(root, "coco-2017", "coco-synthetic", splits=split_sizes(root))


RUNNER = TaskRunner(run=run, preflight=preflight)
