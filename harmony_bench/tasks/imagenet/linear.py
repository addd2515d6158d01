"""``imagenet-linear``: a DINOv2/Harmony-style grid of linear heads trained together on cached features.

Every (feature variant × learning rate) cell is its own ``nn.Linear`` with its own SGD param group;
all cells see the same shuffled mini-batches in one pass per epoch over the cached train features, and
the loss is the sum of the cells' losses (cells do not interact: each head's gradient is that of its
own loss).  SGD with momentum, no weight decay, cosine schedule per iteration to 0, learning rates
scaled by ``batch_size / 256``, heads initialised N(0, 0.01) with zero bias (DINO).  After the last
epoch every head is evaluated on val; the record has the best head's top-1/top-5 and the whole grid.

Deviation from the papers (also in the protocol notes): training reads features of the *eval*
transform from the cache, so there is no random-resized-crop / flip augmentation during training.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from harmony_bench.results import metric
from harmony_bench.runner import TaskContext, TaskOutcome
from harmony_bench.tasks.imagenet.common import (
    check_data,
    data_report,
    percent,
    topk_correct,
    write_json_artifact,
)
from harmony_bench.tasks.imagenet.features import Variant, split_features, variant_features

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


def lr_name(lr: float) -> str:
    """Metric-safe name of a learning rate: ``0.001`` → ``lr_0p001``, ``1e-05`` → ``lr_1e-05``."""
    return "lr_" + format(lr, "g").replace(".", "p")


def build_heads(
    dims: dict[str, int], n_classes: int, lrs: list[float], init_std: float, seed: int = 0
) -> nn.ModuleDict:
    """``{variant: ModuleList(one Linear per lr)}``, DINO's init drawn from a generator seeded ``seed``."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    heads = nn.ModuleDict()
    for name, dim in dims.items():
        cells = nn.ModuleList(nn.Linear(dim, n_classes) for _ in lrs)
        with torch.no_grad():
            for cell in cells:
                cell.weight.normal_(mean=0.0, std=init_std, generator=generator)
                cell.bias.zero_()
        heads[name] = cells
    return heads


def grid_logits(cells: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Logits of every head of one variant in one matmul: ``(B, n_heads, C)``."""
    import torch

    weight = torch.cat([cell.weight for cell in cells])
    bias = torch.cat([cell.bias for cell in cells])
    return (x @ weight.T + bias).view(x.shape[0], len(cells), -1)


def train_grid(
    train: dict[str, Any],
    variants: list[Variant],
    n_classes: int,
    settings: dict[str, Any],
    device: torch.device,
    seed: int,
) -> nn.ModuleDict:
    """Train the whole grid on the cached train features; returns the heads (on ``device``).

    Args:
        train: A cache payload (see ``features.extract``).
        variants: Feature variants, one row of heads each.
        n_classes: Number of classes.
        settings: The protocol's ``train`` block (epochs, batch_size, learning_rates, momentum, ...).
        device: Where to train.
        seed: Seed of the heads' initialisation and of the shuffling.
    """
    import torch
    import torch.nn.functional as F

    lrs = [float(lr) for lr in settings["learning_rates"]]
    batch_size = int(settings["batch_size"])
    scale = batch_size / 256 if settings.get("lr_scaling", "batch/256") == "batch/256" else 1.0
    store = {k: v.to(device) for k, v in train.items() if k in ("cls", "avgpool", "labels")}
    labels, n = store["labels"], int(store["labels"].numel())
    dims = {v.name: variant_features(store, v, slice(0, 1)).shape[1] for v in variants}
    heads = build_heads(dims, n_classes, lrs, float(settings.get("init_std", 0.01)), seed).to(device)
    groups = [
        {"params": list(cells[i].parameters()), "lr": lr * scale}
        for cells in heads.values()
        for i, lr in enumerate(lrs)
    ]
    optimizer = torch.optim.SGD(
        groups, momentum=float(settings["momentum"]), weight_decay=float(settings.get("weight_decay", 0.0))
    )
    steps_per_epoch = max(1, -(-n // batch_size))
    epochs = int(settings["epochs"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * steps_per_epoch, eta_min=0
    )
    generator = torch.Generator().manual_seed(seed)
    heads.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            target = labels[index]
            loss = torch.zeros((), device=device)
            for variant in variants:
                logits = grid_logits(heads[variant.name], variant_features(store, variant, index))
                per_head = F.cross_entropy(logits.flatten(0, 1), target.repeat_interleave(len(lrs)))
                loss = loss + per_head * len(lrs)  # = sum over heads of each head's mean loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return heads.eval()


def evaluate_grid(
    heads: nn.ModuleDict,
    val: dict[str, Any],
    variants: list[Variant],
    device: torch.device,
    batch_size: int,
) -> dict[str, list[dict[int, int]]]:
    """Top-1/top-5 hit counts of every head on the val features: ``{variant: [ {1: n, 5: n} per lr ]}``."""
    import torch

    store = {k: v.to(device) for k, v in val.items() if k in ("cls", "avgpool", "labels")}
    n = int(store["labels"].numel())
    hits = {v.name: [{1: 0, 5: 0} for _ in heads[v.name]] for v in variants}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n), device=device)
            target = store["labels"][index]
            for variant in variants:
                logits = grid_logits(heads[variant.name], variant_features(store, variant, index))
                for i in range(logits.shape[1]):
                    for k, count in topk_correct(logits[:, i], target, (1, 5)).items():
                        hits[variant.name][i][k] += count
    return hits


def grid_metrics(
    hits: dict[str, list[dict[int, int]]], lrs: list[float], total: int
) -> tuple[dict[str, Any], tuple[str, float]]:
    """The metrics (best top-1/top-5 and the grid group) and the best cell ``(variant, lr)``."""
    grid: dict[str, Any] = {}
    best: tuple[float, str, float, float] | None = None
    for variant, cells in hits.items():
        grid[variant] = {}
        for lr, cell in zip(lrs, cells, strict=True):
            top1, top5 = percent(cell[1], total), percent(cell[5], total)
            grid[variant][lr_name(lr)] = {"top1": metric(top1, unit="%"), "top5": metric(top5, unit="%")}
            if top1 is not None and (best is None or top1 > best[0]):
                best = (top1, variant, lr, top5)
    if best is None:
        return {"top1": metric(None), "top5": metric(None), "grid": grid}, ("", 0.0)
    top1, variant, lr, top5 = best
    return {"top1": metric(top1, unit="%"), "top5": metric(top5, unit="%"), "grid": grid}, (variant, lr)


def preflight(context: TaskContext) -> None:
    """Fail before the run when the dataset is missing or a variant name is wrong."""
    check_data(context, ["train", "val"])
    for name in context.config["features"]["variants"]:
        Variant.parse(name)


def run(context: TaskContext) -> TaskOutcome:
    """Extract (or read cached) features, train the grid, evaluate on val, report best and grid."""
    from harmony_bench.data.imagenet import dataset_identity
    from harmony_bench.tasks.imagenet.common import select_device

    config = context.config
    root = check_data(context, ["train", "val"])
    device = select_device(config.get("device"))
    variants = [Variant.parse(name) for name in config["features"]["variants"]]
    splits, keys, hits_cache, n_classes = split_features(context, root, variants, device)
    train, val = splits["train"], splits["val"]
    lrs = [float(lr) for lr in config["train"]["learning_rates"]]
    log.info(
        "linear grid: %d variants x %d lrs, %d epochs on %d train features",
        len(variants),
        len(lrs),
        config["train"]["epochs"],
        train["count"],
    )
    heads = train_grid(train, variants, n_classes, config["train"], device, context.options.seed)
    hits = evaluate_grid(heads, val, variants, device, int(config["eval"]["batch_size"]))
    metrics, (best_variant, best_lr) = grid_metrics(hits, lrs, val["count"])
    data_metrics, artifacts = data_report(
        context,
        {"train": train["count"], "val": val["count"]},
        {split: [tuple(e) for e in payload["corrupt"]] for split, payload in splits.items()},
    )
    metrics.update(data_metrics)
    artifacts.update(
        {
            "best_head": f"{best_variant} {lr_name(best_lr)}",
            "feature_cache_key_train": keys["train"],
            "feature_cache_key_val": keys["val"],
            "feature_cache_hits": ",".join(s for s, hit in hits_cache.items() if hit) or "none",
            "grid": write_json_artifact(context, "linear_grid.json", {"metrics": metrics["grid"]}),
        }
    )
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


run.preflight = preflight  # type: ignore[attr-defined]
