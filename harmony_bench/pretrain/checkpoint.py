"""Training state on disk: written atomically, read with ``weights_only=True``, resumed exactly.

``checkpoint.pt`` (latest, every N steps and each epoch end) holds the model
(student, teacher, objective heads and centres), optimizer, step counters,
the full config and the RNG states, so a resumed CPU run reproduces the loss
curve bit for bit.  A crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

LATEST = "checkpoint.pt"
FORMAT = "harmony-bench-pretrain/1"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: dict[str, Any],
    step: int,
    steps_per_epoch: int,
) -> dict[str, Any]:
    """Everything needed to continue: weights, optimizer, counters, config, RNG."""
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "config": cfg,
        "rng_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    return state


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`atomic_save` (safe load: tensors and plain data only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a harmony-bench pretraining checkpoint (format {FORMAT})")
    return state


def restore(
    state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> int:
    """Load weights, optimizer and RNG; return the step to continue from."""
    if int(state["steps_per_epoch"]) != steps_per_epoch:
        raise ValueError(
            f"cannot resume: the checkpoint has {state['steps_per_epoch']} steps per epoch, this run "
            f"{steps_per_epoch} (same data, --batch-size and number of processes are needed)"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["rng_cuda"])
    return int(state["step"])
