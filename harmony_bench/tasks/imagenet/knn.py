"""``imagenet-knn``: DINO's weighted k-NN classifier on L2-normalised frozen features.

For each val image, the ``k`` train images with the highest cosine similarity vote for their class
with weight ``exp(similarity / T)``; the class scores give top-1 and top-5.  Similarities are
computed in chunks of val rows (one matmul against all train features each), and the neighbours of
the largest ``k`` are found once and reused for the smaller ones (``topk`` returns them sorted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harmony_bench.results import metric
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.tasks.imagenet.common import check_data, data_report, percent, topk_correct
from harmony_bench.tasks.imagenet.features import Variant, split_features, variant_features

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    n_classes: int,
) -> dict[int, torch.Tensor]:
    """Class scores ``(Q, C)`` of the weighted vote for each ``k``; features must be L2-normalised."""
    import torch

    kmax = min(max(ks), train_features.shape[0])
    similarity, neighbours = (query @ train_features.T).topk(kmax, dim=1, largest=True, sorted=True)
    weights = (similarity / temperature).exp()
    labels = train_labels[neighbours]
    scores = {}
    for k in ks:
        zeros = torch.zeros(query.shape[0], n_classes, dtype=weights.dtype, device=weights.device)
        scores[k] = zeros.scatter_add_(1, labels[:, :k], weights[:, :k])  # sum of weights per class
    return scores


def knn_evaluate(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    val: torch.Tensor,
    val_labels: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    n_classes: int,
    chunk_size: int = 256,
) -> dict[int, dict[int, int]]:
    """Top-1/top-5 hit counts per ``k``: ``{k: {1: hits, 5: hits}}`` (features are normalised here)."""
    import torch
    import torch.nn.functional as F

    train, val = F.normalize(train, dim=1), F.normalize(val, dim=1)
    hits = {k: {1: 0, 5: 0} for k in ks}
    with torch.no_grad():
        for start in range(0, val.shape[0], chunk_size):
            scores = knn_scores(
                train, train_labels, val[start : start + chunk_size], ks, temperature, n_classes
            )
            target = val_labels[start : start + chunk_size]
            for k, per_k in scores.items():
                for top, count in topk_correct(per_k, target, (1, 5)).items():
                    hits[k][top] += count
    return hits


def preflight(context: TaskContext) -> None:
    """Fail before the run when the dataset is missing, the variant name is wrong or report_k is not a k."""
    check_data(context, ["train", "val"])
    Variant.parse(context.config["features"]["variant"])
    settings = context.config["knn"]
    ks = [int(k) for k in settings["ks"]]
    if int(settings.get("report_k", ks[0])) not in ks:
        raise ValueError(
            f"knn.report_k {settings['report_k']} is not one of knn.ks {ks}: add it to ks or pick one"
        )


def run(context: TaskContext) -> TaskOutcome:
    """k-NN top-1/top-5 for every ``k`` of the protocol; ``top1``/``top5`` at ``report_k``."""
    from harmony_bench.data.imagenet import dataset_identity
    from harmony_bench.runtime import select_device

    config, settings = context.config, context.config["knn"]
    root = check_data(context, ["train", "val"])
    device = select_device(config.get("device"))
    variant = Variant.parse(config["features"]["variant"])
    splits, keys, cache_hits, n_classes = split_features(context, root, [variant], device)
    train, val = splits["train"], splits["val"]
    ks = [int(k) for k in settings["ks"]]
    if max(ks) > train["count"]:
        log.warning(
            "k up to %d but only %d train features: larger k use all of them", max(ks), train["count"]
        )
    hits = knn_evaluate(
        variant_features(train, variant).to(device),
        train["labels"].to(device),
        variant_features(val, variant).to(device),
        val["labels"].to(device),
        ks,
        float(settings["temperature"]),
        n_classes,
        int(settings.get("chunk_size", 256)),
    )
    total = val["count"]
    per_k = {
        f"k{k}": {
            "top1": metric(percent(h[1], total), unit="%"),
            "top5": metric(percent(h[5], total), unit="%"),
        }
        for k, h in hits.items()
    }
    report_k = int(settings.get("report_k", ks[0]))
    if f"k{report_k}" not in per_k:
        raise ValueError(f"knn.report_k {report_k} is not one of knn.ks {ks}")
    metrics: dict[str, Any] = {**per_k[f"k{report_k}"], "per_k": per_k}
    data_metrics, artifacts = data_report(
        context,
        {"train": train["count"], "val": total},
        {split: [tuple(e) for e in payload["corrupt"]] for split, payload in splits.items()},
    )
    metrics.update(data_metrics)
    artifacts.update(
        {
            "feature_cache_key_train": keys["train"],
            "feature_cache_key_val": keys["val"],
            "feature_cache_hits": ",".join(s for s, hit in cache_hits.items() if hit) or "none",
        }
    )
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


RUNNER = TaskRunner(run=run, preflight=preflight)
