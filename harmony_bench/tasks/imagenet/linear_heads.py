"""The heads of ``imagenet-linear``: a grid of linear classifiers, their optimizer, schedule and scores.

One head per (feature variant × learning rate).  Heads share nothing but their input, so training them
together on one batch with the sum of their losses gives each head exactly the gradient of its own loss
(what Harmony's, DINOv2's and iBOT's linear scripts do with their ``AllClassifiers`` / per-head optimizers).

The protocol blocks read here (see ``benchmarks/imagenet/imagenet-linear.yaml``):

- ``head``: ``norm: batchnorm`` puts a ``BatchNorm1d(affine=False)`` before the linear layer (MAE's linear
  probe).  It has no parameters, so one per feature variant serves every head of that variant.
  ``bn_group`` normalises groups of that many rows with their own statistics (the per-GPU batch of the
  source, whose BatchNorm saw only its GPU's rows); the running statistics follow the first group, as under
  DDP they follow rank 0's.  ``init``/``init_std``: weights ``normal`` (DINO, Harmony, iBOT, SLIP, DINOv2) or
  ``trunc_normal`` (MAE), biases 0.
- ``train``: ``optimizer`` ``sgd`` (torch) or ``lars`` (:mod:`.lars`), ``momentum``, ``weight_decay``,
  ``learning_rates`` scaled by ``lr_scaling`` (:func:`scaled_lr`), and ``schedule``: a linear warm-up from 0
  over ``warmup_epochs``, then a half-cycle cosine to ``min_lr``, evaluated once per epoch
  (``step: epoch``, torch's ``CosineAnnealingLR`` stepped per epoch) or before every update at the
  fractional epoch (``step: iteration``) — :func:`lr_at`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.results import metric
from harmony_bench.tasks.imagenet.common import percent, topk_correct

if TYPE_CHECKING:
    from harmony_bench.tasks.imagenet.features import Variant

LR_SCALINGS = ("batch/256", "none", "slip")
OPTIMIZERS = ("sgd", "lars")
HEAD_NORMS = ("none", "batchnorm")
INITS = ("normal", "trunc_normal")
SCHEDULE_STEPS = ("epoch", "iteration")


def lr_name(lr: float) -> str:
    """Metric-safe name of a learning rate: ``0.001`` → ``lr_0p001``, ``1e-05`` → ``lr_1e-05``."""
    return "lr_" + format(lr, "g").replace(".", "p")


def scaled_lr(lr: float, train: dict[str, Any]) -> float:
    """The learning rate the optimizer gets for a base ``lr`` under ``train.lr_scaling``.

    - ``batch/256``: ``lr * batch_size / 256`` with the global batch (Harmony, DINOv2, iBOT ``scale_lr``;
      MAE ``lr = blr * eff_batch_size / 256``);
    - ``none``: ``lr`` as given;
    - ``slip``: SLIP ``main_linear.py``: ``lr * int(batch_size_per_gpu / world_size) / 256`` — it divides the
      per-GPU batch by the world size once more (MoCo v3's ``-b`` was the global batch); ``train.gpus`` is
      the world size the source ran with, so the value does not depend on how many GPUs run it here.
    """
    rule, batch = train["lr_scaling"], int(train["batch_size"])
    if rule == "batch/256":
        return lr * batch / 256
    if rule == "none":
        return lr
    if rule == "slip":
        gpus = int(train["gpus"])
        return lr * int((batch // gpus) / gpus) / 256
    raise ValueError(f"train.lr_scaling must be one of {LR_SCALINGS}, got {rule!r}")


def lr_at(base: float, progress: float, epochs: int, schedule: dict[str, Any]) -> float:
    """The lr at fractional epoch ``progress``: linear warm-up from 0, then half-cycle cosine to ``min_lr``.

    With no warm-up and ``min_lr`` 0 this is ``base * (1 + cos(pi * progress / epochs)) / 2``: torch's
    ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch (Harmony, iBOT, SLIP) or, at ``progress =
    iteration / steps_per_epoch``, ``CosineAnnealingLR(T_max=epochs * steps_per_epoch)`` stepped per
    iteration (DINOv2).  With a warm-up it is MAE's ``util/lr_sched.adjust_learning_rate``.
    """
    warmup, floor = float(schedule.get("warmup_epochs", 0)), float(schedule.get("min_lr", 0.0))
    if progress < warmup:
        return base * progress / warmup
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (epochs - warmup)))


class HeadGrid(nn.Module):
    """``{variant: [Linear per lr]}``, optionally after one parameter-free BatchNorm per variant.

    Args:
        dims: Feature size of each variant, by variant name.
        n_classes: Number of classes.
        n_lrs: Number of learning rates (heads per variant).
        head: The protocol's ``head`` block.
        seed: Seed of the initialisation (a private generator: the global RNG is untouched).
    """

    def __init__(
        self, dims: dict[str, int], n_classes: int, n_lrs: int, head: dict[str, Any], seed: int
    ) -> None:
        super().__init__()
        norm, init = head.get("norm", "none"), head.get("init", "normal")
        if norm not in HEAD_NORMS:
            raise ValueError(f"head.norm must be one of {HEAD_NORMS}, got {norm!r}")
        if init not in INITS:
            raise ValueError(f"head.init must be one of {INITS}, got {init!r}")
        group = head.get("bn_group")
        self.bn_group = int(group) if group else None
        self.cells = nn.ModuleDict()
        self.norms = nn.ModuleDict()
        std = float(head.get("init_std", 0.01))
        generator = torch.Generator().manual_seed(seed)
        for name, dim in dims.items():
            cells = nn.ModuleList(nn.Linear(dim, n_classes) for _ in range(n_lrs))
            with torch.no_grad():
                for cell in cells:
                    if init == "normal":
                        cell.weight.normal_(mean=0.0, std=std, generator=generator)
                    else:  # timm/torch trunc_normal_ with its default bounds (+-2, absolute)
                        nn.init.trunc_normal_(cell.weight, std=std, generator=generator)
                    cell.bias.zero_()
            self.cells[name] = cells
            if norm == "batchnorm":
                self.norms[name] = nn.BatchNorm1d(
                    dim,
                    affine=False,
                    eps=float(head.get("bn_eps", 1e-5)),
                    momentum=float(head.get("bn_momentum", 0.1)),
                )

    @property
    def n_lrs(self) -> int:
        """Heads per variant."""
        return len(next(iter(self.cells.values())))

    def normalize(self, variant: str, x: torch.Tensor) -> torch.Tensor:
        """The variant's BatchNorm (per ``bn_group`` rows while training), or ``x`` itself."""
        if variant not in self.norms:
            return x
        bn = self.norms[variant]
        if not bn.training:
            return bn(x)
        if x.shape[0] < 2:  # one row has no batch statistics: use the running ones
            return F.batch_norm(x, bn.running_mean, bn.running_var, training=False, eps=bn.eps)
        group = self.bn_group or x.shape[0]
        chunks = list(x.split(group))
        if len(chunks) > 1 and chunks[-1].shape[0] < 2:  # a single-row tail joins the group before it
            chunks[-2:] = [torch.cat(chunks[-2:])]
        out = [bn(chunks[0])]  # updates the running statistics, as rank 0's BatchNorm does under DDP
        out += [F.batch_norm(c, None, None, training=True, momentum=0.0, eps=bn.eps) for c in chunks[1:]]
        return torch.cat(out)

    def logits(self, variant: str, x: torch.Tensor) -> torch.Tensor:
        """Logits of every head of one variant in one matmul: ``(B, n_lrs, C)``."""
        cells = self.cells[variant]
        x = self.normalize(variant, x)
        weight = torch.cat([cell.weight for cell in cells])
        bias = torch.cat([cell.bias for cell in cells])
        return (x @ weight.T + bias).view(x.shape[0], len(cells), -1)

    def loss(self, features: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Sum over heads of the summed (not averaged) cross-entropy of the rows."""
        total = torch.zeros((), device=targets.device)
        for variant, x in features.items():
            logits = self.logits(variant, x)
            expanded = targets.repeat_interleave(logits.shape[1])
            total = total + F.cross_entropy(logits.flatten(0, 1).float(), expanded, reduction="sum")
        return total


def build_optimizer(grid: HeadGrid, lrs: list[float], train: dict[str, Any]) -> torch.optim.Optimizer:
    """One param group per head with its scaled lr (kept as ``base_lr`` for the schedule)."""
    from harmony_bench.tasks.imagenet.lars import LARS

    groups = []
    for cells in grid.cells.values():
        for i, lr in enumerate(lrs):
            base = scaled_lr(float(lr), train)
            groups.append({"params": list(cells[i].parameters()), "lr": base, "base_lr": base})
    momentum, decay = float(train["momentum"]), float(train["weight_decay"])
    name = train.get("optimizer", "sgd")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, weight_decay=decay)
    if name == "lars":
        return LARS(
            groups,
            momentum=momentum,
            weight_decay=decay,
            trust_coefficient=float(train.get("lars_trust", 0.001)),
        )
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {name!r}")


def set_lrs(optimizer: torch.optim.Optimizer, progress: float, epochs: int, schedule: dict[str, Any]) -> None:
    """Every group's lr at fractional epoch ``progress`` (see :func:`lr_at`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(float(group["base_lr"]), progress, epochs, schedule)


# --------------------------------------------------------------------------- evaluation


def grid_hits(
    grid: HeadGrid,
    store: dict[str, Any],
    variants: list[Variant],
    device: torch.device,
    batch_size: int,
) -> dict[str, list[list[int]]]:
    """Top-1/top-5 hit counts of every head on stored features: ``{variant: [[top1, top5] per lr]}``."""
    from harmony_bench.tasks.imagenet.features import variant_features

    labels = store["labels"]
    n = int(labels.numel())
    hits = {v.name: [[0, 0] for _ in range(grid.n_lrs)] for v in variants}
    was_training = grid.training
    grid.eval()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            target = labels[index].to(device)
            for variant in variants:
                logits = grid.logits(variant.name, variant_features(store, variant, index).to(device))
                for i in range(logits.shape[1]):
                    counts = topk_correct(logits[:, i], target, (1, 5))
                    hits[variant.name][i][0] += counts[1]
                    hits[variant.name][i][1] += counts[5]
    grid.train(was_training)
    return hits


def best_cell(hits: dict[str, list[list[int]]], lrs: list[float]) -> tuple[str, float, int, int]:
    """``(variant, lr, top1 hits, top5 hits)`` of the head with the most top-1 hits (the first among ties)."""
    best: tuple[str, float, int, int] | None = None
    for variant, cells in hits.items():
        for lr, (top1, top5) in zip(lrs, cells, strict=True):
            if best is None or top1 > best[2]:
                best = (variant, float(lr), top1, top5)
    assert best is not None
    return best


def report_metrics(
    history: list[dict[str, Any]], lrs: list[float], total: int, report: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Metrics from the evaluations: the reported head, the final grid and the per-epoch history.

    ``report: max`` reports the best head's top-1 maximised over the evaluated epochs (Harmony ``best_acc``,
    iBOT ``best_acc``, MAE ``max_accuracy``, SLIP ``best_acc1``); ``final`` the best head after the last
    epoch (DINOv2).  ``top5`` is that same head's at that same epoch.

    Returns:
        ``(metrics, artifacts)`` — ``artifacts["best_head"]`` names the reported head and its epoch.
    """
    if report not in ("max", "final"):
        raise ValueError(f"report must be 'max' or 'final', got {report!r}")
    bests = [(row["epoch"], *best_cell(row["hits"], lrs)) for row in history]
    chosen = bests[-1] if report == "final" else max(bests, key=lambda b: (b[3], -b[0]))
    epoch, variant, lr, top1, top5 = chosen
    final = history[-1]
    grid = {
        variant_name: {
            lr_name(rate): {
                "top1": metric(percent(cell[0], total), unit="%"),
                "top5": metric(percent(cell[1], total), unit="%"),
            }
            for rate, cell in zip(lrs, cells, strict=True)
        }
        for variant_name, cells in final["hits"].items()
    }
    metrics = {
        "top1": metric(percent(top1, total), unit="%"),
        "top5": metric(percent(top5, total), unit="%"),
        "final_top1": metric(percent(bests[-1][3], total), unit="%"),
        # which epoch scored best; "higher is better" has no meaning here and is set false
        "best_epoch": metric(epoch, higher_is_better=False, unit="epoch"),
        "grid": grid,
        "history": {
            f"epoch_{e:03d}": {"top1": metric(percent(t1, total), unit="%")} for e, _, _, t1, _ in bests
        },
    }
    return metrics, {"best_head": f"{variant} {lr_name(lr)} at epoch {epoch}"}
