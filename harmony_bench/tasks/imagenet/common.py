"""Pieces every ImageNet runner shares: data checks, device, backbone at the protocol's size, reports."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.atomic import atomic_write_text
from harmony_bench.data.imagenet import ImageNetFolder, check_imagenet_root, imagenet_split
from harmony_bench.results import metric

if TYPE_CHECKING:
    import torch

    from harmony_bench.models.backbone import Backbone
    from harmony_bench.runner import TaskContext

log = logging.getLogger(__name__)


def check_data(context: TaskContext, splits: Sequence[str]) -> Path:
    """Validate ``--data-root`` for ``splits`` (raises ``DatasetLayoutError`` saying how to prepare it)."""
    return check_imagenet_root(context.options.data_root, splits)


def preprocessing_for(card_preprocessing: dict[str, Any], transform: dict[str, Any] | None) -> dict[str, Any]:
    """The card's ``preprocessing`` with the protocol's ``transform`` values (resize, crop, interpolation).

    A ``null`` value keeps the card's; mean and std always stay the card's (the weights were trained with
    them).
    """
    merged = dict(card_preprocessing)
    for key in ("resize", "crop", "interpolation"):
        value = (transform or {}).get(key)
        if value is not None:
            merged[key] = value
    if (transform or {}).get("crop") is not None and (transform or {}).get("resize") is None:
        merged["resize"] = merged["crop"]  # a crop without a resize means "resize to the crop"
    return merged


def load_for_protocol(context: TaskContext, transform: dict[str, Any] | None) -> tuple[Backbone, Any]:
    """Load the backbone at the protocol's crop size and build its eval transform.

    Returns:
        ``(backbone in eval mode, torchvision transform)``.
    """
    from harmony_bench.models.backbone import load_backbone
    from harmony_bench.models.preprocess import eval_transform

    card = context.card
    preprocessing = preprocessing_for(card.preprocessing, transform)
    crop = int(preprocessing.get("crop") or preprocessing["input_size"])
    native = int(card.preprocessing.get("crop") or card.preprocessing["input_size"])
    overrides = {"img_size": crop} if crop != native else {}
    backbone = load_backbone(
        card, context.options.checkpoint, trust_checkpoint=context.options.trust_checkpoint, **overrides
    )
    return backbone.eval(), eval_transform(preprocessing)


def open_split(context: TaskContext, root: Path, split: str, transform: Any) -> ImageNetFolder:
    """A split whose corrupt-image events are appended to ``<work_dir>/corrupt-<split>.jsonl``."""
    log_path = context.work_dir / f"corrupt-{split}.jsonl"
    log_path.unlink(missing_ok=True)  # events of this run only
    return imagenet_split(root, split, transform, corrupt_log=log_path)


def make_loader(dataset: Any, batch_size: int, num_workers: int, device: torch.device) -> Any:
    """An ordered ``DataLoader`` that drops corrupt samples with ``skip_corrupt_collate``."""
    from torch.utils.data import DataLoader

    from harmony_bench.data.imagenet import skip_corrupt_collate

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=skip_corrupt_collate,
        persistent_workers=False,
    )


def batches(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, skipping those in which every image was corrupt (collated to ``None``)."""
    for batch in loader:
        if batch is not None:
            yield batch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[int, int]:
    """Number of rows whose target is among the ``k`` highest logits, for each ``k`` (capped at #classes)."""
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices
    hits = top == targets.view(-1, 1)
    return {k: int(hits[:, : min(k, kmax)].any(dim=-1).sum()) for k in ks}


def percent(count: float, total: int) -> float | None:
    """``100 * count / total``, or None for an empty set."""
    return 100.0 * count / total if total else None


def data_report(
    context: TaskContext, counts: dict[str, int], corrupt: dict[str, list[tuple[str, str]]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Metrics group ``data`` (images used and corrupt images per split) and the corrupt-list artifact.

    Corrupt images are excluded from the evaluation (see ``skip_corrupt_collate``); they are listed in
    ``<work_dir>/corrupt_images.txt`` and counted here so that a table shows them.
    """
    group: dict[str, Any] = {}
    for split, used in counts.items():
        group[f"{split}_images"] = metric(used, higher_is_better=True, unit="images")
        group[f"{split}_corrupt_images"] = metric(
            len(corrupt.get(split, [])), higher_is_better=False, unit="images"
        )
    artifacts: dict[str, str] = {}
    bad = [(split, path, error) for split, events in corrupt.items() for path, error in events]
    if bad:
        context.work_dir.mkdir(parents=True, exist_ok=True)
        listing = context.work_dir / "corrupt_images.txt"
        atomic_write_text(listing, "".join(f"{s}\t{p}\t{e}\n" for s, p, e in bad))
        artifacts["corrupt_images"] = str(listing)
        log.warning("%d corrupt images were excluded; listed in %s", len(bad), listing)
    return {"data": group}, artifacts


def write_json_artifact(context: TaskContext, name: str, payload: Any) -> str:
    """Write ``payload`` as ``<work_dir>/<name>`` and return its path (for ``TaskOutcome.artifacts``)."""
    context.work_dir.mkdir(parents=True, exist_ok=True)
    path = context.work_dir / name
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return str(path)
