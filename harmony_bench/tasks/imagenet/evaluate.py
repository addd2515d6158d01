"""``imagenet-eval``: a released ImageNet classifier on the val set with its source's eval transform.

Nothing is trained.  The card must describe a classifier (``architecture.overrides.num_classes`` equal to
the number of val class folders, e.g. MAE's fine-tuned ``mae-vit-*-in1k-ft``); its logits are compared
with the ImageFolder label of each image (class index = position of the wnid folder in sorted order, as
every reference script reads ImageNet).  The record has top-1, top-5 and the mean cross-entropy (what
MAE's ``main_finetune.py --eval`` prints), and the images used / corrupt.  With ``eval.save_logits`` the
logits, labels and file paths are kept in ``<work_dir>/val_logits.pt`` for audits.

One process: an evaluation of 50,000 images needs no DDP (under torchrun the run is refused).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.results import metric
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.runtime import check_amp, precision_label, world_size
from harmony_bench.tasks.imagenet.common import check_data, data_report, percent

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LOGITS_NAME = "val_logits.pt"


def card_classes(context: TaskContext) -> int:
    """The number of classes the card's classifier head predicts (0: the card is not a classifier)."""
    return int((context.card.architecture.get("overrides") or {}).get("num_classes") or 0)


def preflight(context: TaskContext) -> None:
    """Before any record: the val split, a classifier card whose classes match it, the config values."""
    from harmony_bench.data.imagenet import wnids

    root = check_data(context, ["val"])
    check_amp(context.config["amp"])
    if world_size() > 1:
        raise ValueError("imagenet-eval runs in one process; run it without torchrun")
    classes = card_classes(context)
    if classes < 1 or context.card.text_tower is not None:
        raise ValueError(
            f"imagenet-eval evaluates a fine-tuned classifier; card {context.card.name!r} has no classifier "
            "head (architecture.overrides.num_classes). Use a classifier card such as mae-vit-b16-in1k-ft, "
            "or "
            "imagenet-linear / imagenet-finetune to train a head on this backbone"
        )
    found = len(wnids(root))
    if found != classes:
        raise ValueError(
            f"card {context.card.name!r} predicts {classes} classes but {root / 'val'} has {found} class "
            "folders; the head's class index must be the sorted wnid order of the same classes"
        )


def run(context: TaskContext) -> TaskOutcome:
    """Evaluate the classifier on val: top-1/top-5 and mean cross-entropy."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from harmony_bench.data.imagenet import dataset_identity, imagenet_split, skip_corrupt_collate
    from harmony_bench.models.backbone import load_backbone
    from harmony_bench.models.preprocess import eval_transform
    from harmony_bench.runtime import autocast, select_device
    from harmony_bench.tasks.imagenet.common import batches, topk_correct
    from harmony_bench.tasks.imagenet.finetune_recipe import input_size, preprocessing

    config = context.config
    preflight(context)
    root = check_data(context, ["val"])
    device = select_device(config.get("device"))
    prep = preprocessing(context)
    native = int(context.card.preprocessing.get("crop") or context.card.preprocessing["input_size"])
    size = input_size(prep)
    overrides = {"img_size": size} if size != native else {}
    backbone = load_backbone(
        context.card,
        context.options.checkpoint,
        trust_checkpoint=context.options.trust_checkpoint,
        **overrides,
    )
    model = backbone.model.to(device).eval()
    context.work_dir.mkdir(parents=True, exist_ok=True)
    corrupt_log = context.work_dir / "corrupt-val.jsonl"
    corrupt_log.unlink(missing_ok=True)  # events of this run only
    dataset = imagenet_split(root, "val", eval_transform(prep), corrupt_log=corrupt_log)
    settings = config["eval"]
    loader = DataLoader(
        dataset,
        batch_size=int(settings["batch_size"]),
        shuffle=False,
        num_workers=int(settings["num_workers"]),
        pin_memory=device.type == "cuda",
        collate_fn=skip_corrupt_collate,
    )
    keep = bool(settings.get("save_logits"))
    kept: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    top1 = top5 = seen = 0
    loss_sum = 0.0
    with torch.no_grad():
        for images, targets in batches(loader):
            with autocast(device, config["amp"]):
                logits = model(images.to(device, non_blocking=True))
            logits, targets = logits.float(), targets.to(device)
            hits = topk_correct(logits, targets, (1, 5))
            top1, top5, seen = top1 + hits[1], top5 + hits[5], seen + len(targets)
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            if keep:
                kept.append(logits.cpu())
                labels.append(targets.cpu())
    if seen == 0:
        raise ValueError(f"no readable image in {root / 'val'} ({len(dataset.corrupt)} corrupt)")
    corrupt = list(dataset.corrupt)
    metrics: dict[str, Any] = {
        "top1": metric(percent(top1, seen), unit="%"),
        "top5": metric(percent(top5, seen), unit="%"),
        "loss": metric(loss_sum / seen, higher_is_better=False),
    }
    data_metrics, artifacts = data_report(context, {"val": seen}, {"val": corrupt})
    metrics.update(data_metrics)
    if keep:
        artifacts["val_logits"] = str(_save_logits(context.work_dir, kept, labels, dataset, corrupt))
    artifacts["precision"] = precision_label(device.type, config["amp"])
    log.info(
        "imagenet-eval %s: top-1 %.3f top-5 %.3f on %d images",
        context.card.name,
        100 * top1 / seen,
        100 * top5 / seen,
        seen,
    )
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


def _save_logits(
    work_dir: Path, logits: list[torch.Tensor], labels: list[torch.Tensor], dataset: Any, corrupt: list[Any]
) -> Path:
    """``{"logits": (N, C) fp32, "labels": (N,), "paths": [...]}`` for the N readable images, in order."""
    import torch

    from harmony_bench.atomic import atomic_write

    bad = {path for path, _ in corrupt}
    paths = [path for path, _ in dataset.samples if path not in bad]
    payload = {"logits": torch.cat(logits), "labels": torch.cat(labels), "paths": paths}
    path = work_dir / LOGITS_NAME
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


RUNNER = TaskRunner(run=run, preflight=preflight)
