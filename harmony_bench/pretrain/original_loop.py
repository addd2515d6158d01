"""The Harmony repo's step structure, re-stated on our modules: one forward + backward per objective path.

``main_harmony.py`` runs its paths one after the other, each with its own forward and its own
``loss.backward()`` (gradients accumulate), then one AdamW step (torch's default, not fused) and the EMA
update.  Its paths are: discriminative (iBOT), contrastive (CLIP + soft targets), text (MLM + text
distillation, one text forward shared by both) and generative (MAE).  Nothing is shared between paths:
the EMA teacher runs on the global crops once for iBOT and again for the soft CLIP targets.

This module exists for two honest comparisons with :func:`harmony_bench.pretrain.trainer.train_step`
(one forward of everything, ONE backward over the weighted sum):

- the tests check that both give the same gradients and the same weights after a step;
- ``benchmarks/speed/pretrain.py`` times both on the same model and batch.

It is not used for training.
"""

from __future__ import annotations

from typing import Any

import torch

from harmony_bench.pretrain import optim
from harmony_bench.pretrain.model import PretrainModel

# Objectives computed together in one forward/backward in the Harmony repo; every other one is its own path.
PATHS = (("ibot",), ("clip",), ("mlm", "text_dist"), ("mae",))


def objective_paths(names: list[str]) -> list[list[str]]:
    """The objectives grouped into the Harmony repo's paths, in its order (d, c, t, g, then the rest)."""
    groups = [[n for n in path if n in names] for path in PATHS]
    groups = [g for g in groups if g]
    grouped = {n for g in groups for n in g}
    return groups + [[n] for n in names if n not in grouped]


def backward_per_path(
    model: PretrainModel, batch: dict[str, Any], sched: dict[str, float], device: torch.device | None = None
) -> torch.Tensor:
    """Forward + ``backward()`` per path, each in a fresh context (no shared forwards); the summed loss."""
    from harmony_bench.pretrain.trainer import autocast

    total = torch.zeros(())
    for path in objective_paths(list(model.objectives)):
        ctx = model.context(batch, sched, path)  # the CLIP path runs the teacher on crop 0 only, as the repo
        loss: torch.Tensor | float = 0.0
        with autocast(device or torch.device("cpu")):
            for name in path:
                objective = model.objectives[name]
                value, _ = objective(ctx)
                loss = loss + objective.weight * value
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        total = total + loss.detach().float().cpu()
    return total


def build_default_adamw(model: PretrainModel, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW as the Harmony repo builds it: same groups and settings, torch's default implementation."""
    o = cfg["optim"]
    return torch.optim.AdamW(
        optim.param_groups(model), lr=float(o["lr"]), betas=tuple(o["betas"]), eps=float(o["eps"])
    )


def original_step(
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    sched: dict[str, float],
    cfg: dict[str, Any],
    device: torch.device | None = None,
) -> torch.Tensor:
    """One step of the original structure: per-path backward, clip, AdamW step, EMA; returns the summed loss.

    ``device`` picks the autocast (bf16 on CUDA, as :func:`~harmony_bench.pretrain.trainer.train_step`), so a
    timing comparison differs only in the step's structure.
    """
    optim.apply_schedule(optimizer, sched)
    optimizer.zero_grad(set_to_none=True)
    total = backward_per_path(model, batch, sched, device)
    model.after_backward(int(sched["epoch"]))
    optim.clip_gradients(model, float(cfg["optim"]["clip_grad"]), cfg["optim"]["clip_mode"])
    optimizer.step()
    model.ema_update(sched["momentum"])
    return total
