"""The torch runtime rules, in one place: process group and world size, device, autocast policy.

Every task, pretraining and the mm adapter read these instead of parsing ``WORLD_SIZE`` or choosing a
device themselves, so a run on one CPU, one GPU or under ``torchrun`` follows the same rules everywhere:

- *Processes.*  ``torchrun`` (or Slurm through ``torchrun``) sets ``WORLD_SIZE``, ``RANK`` and
  ``LOCAL_RANK``; without them a run is one process (:func:`world_size`, :func:`is_main_process`).
  :func:`init_process_group` joins the group (NCCL on CUDA, gloo on CPU) and returns a
  :class:`ProcessGroup`; rank 0 writes records, checkpoints and artifacts.
- *Device.*  ``auto`` (or nothing) means CUDA when available, else CPU (:func:`select_device`); under
  DDP each rank takes the GPU of its ``LOCAL_RANK`` (:func:`rank_device`).
- *Autocast.*  :func:`effective_amp` is the policy: ``none`` is fp32; ``fp16`` autocasts on CUDA only;
  ``bf16`` autocasts on CUDA, and on CPU for inference only — training on CPU stays fp32 so a CPU run
  is exact and resumes bit for bit.  :func:`autocast` applies it, :func:`precision_label` reports it.

torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

AMP_MODES = ("none", "bf16", "fp16")


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a ``torchrun`` job (``world == 1``: a plain single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the group (and destroys it when done)

    @property
    def main(self) -> bool:
        """Rank 0 writes records, checkpoints, logs and exports."""
        return self.rank == 0


def world_size(environ: Mapping[str, str] = os.environ) -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when absent or empty)."""
    return int(environ.get("WORLD_SIZE") or 1)


def is_main_process(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is rank 0 (``RANK``; a plain process is)."""
    return int(environ.get("RANK") or 0) == 0


def init_process_group(device_type: str) -> ProcessGroup:
    """Join the process group ``torchrun`` describes (env:// rendezvous); a plain process otherwise.

    ``device_type`` picks the backend (``cuda``: NCCL, and this rank's GPU becomes the current device;
    anything else: gloo).  A group that already exists is joined, not created (``owns_group`` False).
    """
    world = world_size()
    if world <= 1:
        return ProcessGroup()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK") or 0)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ProcessGroup(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, owns_group=owns
    )


def barrier(group: ProcessGroup) -> None:
    """Wait for every rank (no-op in a single process)."""
    if group.world > 1:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op in a single process)."""
    if group.world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def process_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (signal 0; one we may not signal exists too)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- device


def default_device_type() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def select_device(name: str | None) -> torch.device:
    """``auto`` or None (CUDA when available, else CPU), or an explicit torch device string."""
    import torch

    return torch.device(default_device_type() if name in (None, "", "auto") else name)


def rank_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """``device``, except that under DDP on CUDA each rank takes its own GPU (``LOCAL_RANK``)."""
    import torch

    if device.type == "cuda" and group.world > 1:
        return torch.device("cuda", group.local_rank)
    return device


# --------------------------------------------------------------------------- autocast


def check_amp(amp: str, what: str = "amp") -> str:
    """``amp`` if it is one of :data:`AMP_MODES`; ValueError naming ``what`` otherwise."""
    if amp not in AMP_MODES:
        raise ValueError(f"{what} must be one of {AMP_MODES}, got {amp!r}")
    return amp


def effective_amp(device_type: str, amp: str, *, training: bool = False) -> str:
    """The mode a run with ``amp`` really runs in on ``device_type`` (the policy in the module docstring)."""
    check_amp(amp)
    if amp == "none" or device_type == "cuda":
        return amp
    return "bf16" if amp == "bf16" and not training else "none"


def autocast(
    device: torch.device, amp: str, *, training: bool = False
) -> contextlib.AbstractContextManager[Any]:
    """Autocast as :func:`effective_amp` decides; a null context for fp32."""
    mode = effective_amp(device.type, amp, training=training)
    if mode == "none":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if mode == "bf16" else torch.float16)


def precision_label(device_type: str, amp: str, *, training: bool = False) -> str:
    """What a record's artifacts say the run computed in: ``fp32`` or ``<mode> autocast``."""
    mode = effective_amp(device_type, amp, training=training)
    return "fp32" if mode == "none" else f"{mode} autocast"
