"""torch.distributed collectives of the objectives: gathers, reductions (the group: ``runtime``).

Everything degrades to the single-process case when no process group exists,
so the same objective code runs in tests, on one CPU and on many GPUs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0; gradients flow back to each rank's own part (summed)."""
    if not active():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (targets: no gradient)."""
    if not active():
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average of ``x`` over ranks (iBOT's centre update)."""
    if not active():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world()


@torch.no_grad()
def mean_terms(terms: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every logged scalar averaged over ranks (one collective), so the log shows the global-batch loss.

    Each rank's loss is its local rows' mean; their average is the loss over the global batch.  Every
    rank must call this at the same steps.
    """
    if not active():
        return terms
    keys = list(terms)
    values = torch.stack([terms[k].detach().float().reshape(()).to(device) for k in keys])
    dist.all_reduce(values)
    values = (values / world()).cpu()
    return {k: values[i] for i, k in enumerate(keys)}
