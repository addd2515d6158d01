"""The Harmony repo's step structure, re-stated on our modules: one forward + backward per objective path.

``main_harmony.py`` runs its paths one after the other, each with its own forward and its own
``loss.backward()`` (gradients accumulate), then ``utils.clip_gradients`` (a loop over the image student's
parameters, reading each norm back with ``.item()``), one AdamW step (torch's default, not fused) and the
EMA update (a loop over parameter pairs).  Its paths are: discriminative (iBOT), contrastive (CLIP + soft
targets), text (MLM + text distillation, one text forward shared by both) and generative (MAE).  Nothing
is shared between paths: the EMA teacher runs on the global crops once for iBOT and again for the soft
CLIP targets, and the student ViT runs once per path.  The objectives' own code (heads only on masked
rows, for instance) is ours in both structures, so the comparison isolates the step's structure.

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
    from harmony_bench.pretrain.trainer import AMP, autocast

    total = torch.zeros(())
    for path in objective_paths(list(model.objectives)):
        ctx = model.context(batch, sched, path)  # the CLIP path runs the teacher on crop 0 only, as the repo
        loss: torch.Tensor | float = 0.0
        with autocast(device or torch.device("cpu"), AMP, training=True):
            for name in path:
                objective = model.objectives[name]
                value, _ = objective(ctx)
                loss = loss + objective.weight * value
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        total = total + loss.detach().float().cpu()
    return total


def clip_per_param_loop(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """The repo's ``utils.clip_gradients``: per parameter, its norm read back to the host, then a scale."""
    for p in params:
        if p.grad is not None:
            norm = p.grad.norm(2)
            coef = max_norm / (float(norm) + 1.0e-6)  # the repo's ``param_norm.item()``: a sync per tensor
            if coef < 1:
                p.grad.mul_(coef)


@torch.no_grad()
def ema_loop(model: PretrainModel, momentum: float) -> None:
    """The repo's EMA update: ``param_k.mul_(m).add_((1 - m) * param_q)``, one parameter pair at a time."""
    for student, teacher in model.ema_pairs():
        for q, k in zip(student.parameters(), teacher.parameters(), strict=True):
            k.mul_(momentum).add_((1 - momentum) * q.detach())


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
    o = cfg["optim"]
    params = model.clipped_parameters(o["clip_scope"])
    if o["clip_mode"] == "per-param":
        clip_per_param_loop(params, float(o["clip_grad"]))
    else:
        optim.clip_gradients(params, float(o["clip_grad"]), o["clip_mode"])
    optimizer.step()
    model.after_step()
    ema_loop(model, sched["momentum"])
    return total
