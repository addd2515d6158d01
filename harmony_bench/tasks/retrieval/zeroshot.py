"""``retrieval-coco`` / ``retrieval-flickr30k``: zero-shot image→text and text→image recall@{1,5,10}.

Every image and every caption is embedded once in the card's joint space — ``Backbone.embed_image``
(the image tower and its projection) and ``Backbone.embed_text`` (the text tower and its projection),
the path ``imagenet-zeroshot`` uses — and L2-normalised; a pair's score is the dot product.  The
recall rule, ties included, is in ``metric.py``; the readers and their orders are in ``data.py``.

Config keys (see ``benchmarks/retrieval/*.yaml`` for the values and their sources): ``reader``,
``annotations``, ``image_dir``, ``split`` (which files), ``transform`` (resize/crop/interpolation;
``null`` keeps the card's), ``truncate`` (``cut``: Harmony's tokenizer keeps the first 77 tokens, so
a long caption loses its end-of-text token; ``eot``: open_clip's, the last kept token becomes
end-of-text), ``recall_at`` (the k of recall@k), ``batch_size``, ``num_workers``, ``amp``, ``device``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harmony_bench.preflight import check_text_tower_file
from harmony_bench.results import metric
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.runtime import autocast, select_device
from harmony_bench.tasks.imagenet.common import load_for_protocol
from harmony_bench.tasks.retrieval.data import CaptionSet, ImageFiles, read_captions

if TYPE_CHECKING:
    import torch

    from harmony_bench.models.backbone import Backbone

log = logging.getLogger(__name__)

TRUNCATE_MODES = ("cut", "eot")


def caption_set(context: TaskContext) -> CaptionSet:
    """The protocol's caption set under ``--data-root`` (checked: raises naming any missing file)."""
    config = context.config
    return read_captions(
        context.options.data_root,
        config["reader"],
        config["annotations"],
        config["image_dir"],
        config.get("split"),
        dataset=context.task.dataset.get("name", "coco"),
    )


def preflight(context: TaskContext) -> None:
    """Refuse a card without a joint image–text space, a bad setting or a missing file before loading."""
    card = context.card
    if card.text_tower is None or not card.architecture.get("projection_dim"):
        raise ValueError(
            f"backbone {card.name!r} has no text tower and image projection (a joint image-text space), so "
            "it cannot do image-text retrieval; use a CLIP-style card (clip-*, openclip-*, slip-*, "
            "harmony-*, maskclip-*)"
        )
    check_text_tower_file(card, context.options.checkpoint, "image-text retrieval")
    if context.config["truncate"] not in TRUNCATE_MODES:
        raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {context.config['truncate']!r}")
    recall_ks(context.config)
    caption_set(context)


def recall_ks(config: dict[str, Any]) -> list[int]:
    """``recall_at``: a non-empty list of distinct positive integers."""
    ks = config["recall_at"]
    valid = isinstance(ks, list) and ks and all(isinstance(k, int) and not isinstance(k, bool) for k in ks)
    if not valid or min(ks) < 1 or len(set(ks)) != len(ks):
        raise ValueError(
            f"recall_at must be a list of distinct positive integers (e.g. [1, 5, 10]), got {ks!r}"
        )
    return list(ks)


def tokenize(backbone: Backbone, texts: Sequence[str], truncate: str) -> tuple[torch.Tensor, int]:
    """Token ids at the card's context length, and how many captions were longer than it.

    ``eot`` is open_clip's tokenizer as it is.  ``cut`` tokenizes one position longer and drops it,
    which leaves exactly the first ``context_length`` ids of ``[SOT] + caption + [EOT]``: the rule of
    Harmony's ``SimpleTokenizer``.
    """
    tokenizer = backbone.tokenizer
    length = int(tokenizer.context_length)
    longer = tokenizer(list(texts), context_length=length + 1)
    truncated = int((longer[:, length] != 0).sum())
    if truncate == "cut":
        return longer[:, :length].contiguous(), truncated
    if truncate == "eot":
        return tokenizer(list(texts)), truncated
    raise ValueError(f"truncate must be one of {TRUNCATE_MODES}, got {truncate!r}")


def embed_captions(
    backbone: Backbone, captions: Sequence[str], truncate: str, batch_size: int
) -> tuple[torch.Tensor, int]:
    """``(M, D)`` L2-normalised caption embeddings (fp32, CPU) and the number of truncated captions."""
    import torch
    import torch.nn.functional as F

    chunks, truncated = [], 0
    with torch.no_grad():
        for start in range(0, len(captions), batch_size):
            tokens, cut = tokenize(backbone, captions[start : start + batch_size], truncate)
            truncated += cut
            chunks.append(backbone.embed_text(tokens).float().cpu())
    return F.normalize(torch.cat(chunks), dim=-1), truncated


def embed_images(
    backbone: Backbone, data: ImageFiles, batch_size: int, num_workers: int, device: torch.device, amp: str
) -> torch.Tensor:
    """``(N, D)`` L2-normalised image embeddings (fp32, CPU) in dataset order."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    loader = DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    chunks = []
    with torch.no_grad():
        for images, _ in loader:
            with autocast(device, amp):
                chunks.append(backbone.embed_image(images.to(device)).float().cpu())
    return F.normalize(torch.cat(chunks), dim=-1)


def run(context: TaskContext) -> TaskOutcome:
    """Embed all images and captions, then image→text and text→image recall@{1,5,10} and their mean."""
    import torch

    from harmony_bench.data.imagenet import dataset_identity
    from harmony_bench.tasks.retrieval.metric import retrieval_metrics

    config = context.config
    data = caption_set(context)
    device = select_device(config.get("device"))
    backbone, transform = load_for_protocol(context, config.get("transform"))
    backbone.to(device)
    batch_size, workers = int(config["batch_size"]), int(config.get("num_workers", 0))
    log.info("retrieval: %d images, %d captions", len(data.images), len(data.captions))
    texts, truncated = embed_captions(backbone, data.captions, config["truncate"], batch_size)
    images = embed_images(
        backbone, ImageFiles(data.images, transform), batch_size, workers, device, config["amp"]
    )
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"{context.card.name}: image embeddings have {images.shape[1]} dims but text embeddings "
            f"{texts.shape[1]}: the card's projection_dim and text_tower.embed_dim must be the joint space"
        )
    for what, tensor in (("image", images), ("caption", texts)):
        bad = int((~torch.isfinite(tensor)).any(dim=1).sum())
        if bad:
            raise ValueError(f"{bad} {what} embeddings are not finite (NaN/inf): recall would be meaningless")
    values = retrieval_metrics(images, texts, torch.tensor(data.caption_image), recall_ks(config))
    if truncated:
        log.warning(
            "%d captions are longer than the context length (truncate=%s)", truncated, config["truncate"]
        )
    metrics: dict[str, Any] = {}
    for name, value in values.items():  # image_to_text.R@1 -> {"image_to_text": {"R@1": leaf}}
        group, _, leaf = name.rpartition(".")
        (metrics.setdefault(group, {}) if group else metrics)[leaf] = metric(value, unit="%")
    metrics["data"] = {
        "images": metric(len(data.images), unit="images"),
        "captions": metric(len(data.captions), unit="captions"),
        "captions_truncated": metric(truncated, higher_is_better=False, unit="captions"),
    }
    root = context.options.data_root
    dataset = dataset_identity(root)
    dataset["name"] = f"{context.task.dataset['name']}{'-synthetic' if dataset['synthetic'] else ''}"
    dataset["files"] = data.files
    return TaskOutcome(metrics=metrics, dataset=dataset)


RUNNER = TaskRunner(run=run, preflight=preflight)
