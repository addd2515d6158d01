"""``imagenet-zeroshot``: classify with text embeddings of prompt ensembles (CLIP / SLIP / Harmony protocol).

The classifier is open_clip's ``build_zero_shot_classifier``: for each class, every template is filled
with the class name, embedded and L2-normalised; the embeddings are averaged and renormalised.  Logits
are ``logit_scale * cos(image, class)``.  Template sets: ``slip-imagenet-7`` (what SLIP and Harmony
report) and ``openai-imagenet-80`` (what CLIP reports, from open_clip), or an explicit list in the
protocol.  Metrics: top-1, top-5, mean per-class recall, and per-class recall keyed by wnid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harmony_bench.preflight import check_text_tower_file
from harmony_bench.results import metric
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.runtime import autocast, select_device
from harmony_bench.tasks.imagenet.common import (
    batches,
    check_data,
    data_report,
    load_for_protocol,
    make_loader,
    open_split,
    percent,
    topk_correct,
)

if TYPE_CHECKING:
    import torch

    from harmony_bench.models.backbone import Backbone

log = logging.getLogger(__name__)

# SLIP's templates.json "imagenet" entry, as used by SLIP's and Harmony's eval_zeroshot (harmony.md §4).
SLIP_IMAGENET_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def template_set(spec: str | Sequence[str]) -> list[str | Callable[[str], str]]:
    """Prompt templates: a set name (``slip-imagenet-7``, ``openai-imagenet-80``) or a list with ``{}``."""
    if isinstance(spec, str):
        if spec == "slip-imagenet-7":
            return list(SLIP_IMAGENET_TEMPLATES)
        if spec == "openai-imagenet-80":
            from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

            return list(OPENAI_IMAGENET_TEMPLATES)
        raise ValueError(f"unknown template set {spec!r}; use slip-imagenet-7, openai-imagenet-80 or a list")
    templates = list(spec)
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(
            "zeroshot.templates must be a set name or a non-empty list of strings containing '{}'"
        )
    return templates


class _TextEncoder:
    """The ``encode_text(tokens, normalize=True)`` interface open_clip's helpers expect, over a Backbone."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if not normalize:
            raise ValueError("Backbone.embed_text returns normalised embeddings only")
        return self.backbone.embed_text(tokens)


def build_classifier(
    backbone: Backbone, classnames: Sequence[str], templates: Sequence[Any], device: torch.device
) -> torch.Tensor:
    """Class embeddings ``(D, C)``: per prompt normalised, averaged over templates, renormalised."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    return build_zero_shot_classifier(
        _TextEncoder(backbone), backbone.tokenize, list(classnames), list(templates), device=device
    )


def image_logits(
    backbone: Backbone,
    images: torch.Tensor,
    classifier: torch.Tensor,
    logit_scale: float,
    amp: str = "none",
) -> torch.Tensor:
    """``logit_scale * normalised image embeddings @ classifier`` (fp32)."""
    import torch

    with torch.no_grad(), autocast(images.device, amp):
        features = backbone.embed_image(images)
    return logit_scale * features.float() @ classifier.float()


def preflight(context: TaskContext) -> None:
    """Fail before the run on a missing dataset or a backbone without a text tower."""
    check_data(context, ["val"])
    if context.card.text_tower is None:
        raise ValueError(
            f"backbone {context.card.name!r} has no text tower, so it cannot do zero-shot classification; "
            "use imagenet-linear or imagenet-knn, or a CLIP-style card (clip-*, slip-*, harmony-*, "
            "maskclip-*)"
        )
    check_text_tower_file(context.card, context.options.checkpoint, "zero-shot")


def run(context: TaskContext) -> TaskOutcome:
    """Zero-shot top-1/top-5 and per-class recall on the val split."""
    import torch

    from harmony_bench.data.imagenet import class_names, dataset_identity, wnids

    config = context.config
    root = check_data(context, ["val"])
    device = select_device(config.get("device"))
    backbone, transform = load_for_protocol(context, config.get("transform"))
    backbone.to(device)
    names = class_names(root, config.get("classnames", "clip"), config.get("labels_file"))
    templates = template_set(config["templates"])
    log.info("zero-shot classifier: %d classes x %d templates", len(names), len(templates))
    with torch.no_grad():
        classifier = build_classifier(backbone, names, templates, device)

    dataset = open_split(context, root, "val", transform)
    n_classes, scale = len(names), float(config.get("logit_scale", 100.0))
    correct, total = {1: 0, 5: 0}, 0
    per_class_hits = torch.zeros(n_classes, dtype=torch.long)
    per_class_count = torch.zeros(n_classes, dtype=torch.long)
    loader = make_loader(dataset, int(config["batch_size"]), int(config.get("num_workers", 0)), device)
    for images, targets in batches(loader):
        logits = image_logits(backbone, images.to(device), classifier, scale, config.get("amp", "none")).cpu()
        for k, hits in topk_correct(logits, targets, (1, 5)).items():
            correct[k] += hits
        total += len(targets)
        per_class_count += torch.bincount(targets, minlength=n_classes)
        right = targets[logits.argmax(dim=-1) == targets]
        per_class_hits += torch.bincount(right, minlength=n_classes)

    recall = {
        wnid: metric(percent(int(h), int(c)), unit="%")
        for wnid, h, c in zip(wnids(root), per_class_hits, per_class_count, strict=True)
    }
    valid = [leaf["value"] for leaf in recall.values() if leaf["value"] is not None]
    metrics: dict[str, Any] = {
        "top1": metric(percent(correct[1], total), unit="%"),
        "top5": metric(percent(correct[5], total), unit="%"),
        "mean_per_class_recall": metric(sum(valid) / len(valid) if valid else None, unit="%"),
        "per_class_recall": recall,
    }
    data_metrics, artifacts = data_report(context, {"val": total}, {"val": dataset.corrupt})
    metrics.update(data_metrics)
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


RUNNER = TaskRunner(run=run, preflight=preflight)
