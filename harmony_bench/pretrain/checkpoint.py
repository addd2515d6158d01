"""Training state on disk: written atomically, read with ``weights_only=True``, resumed exactly.

``checkpoint.pt`` (latest, every N steps and each epoch end) holds the model
(student, teacher, objective heads and centres), optimizer, step counters,
the full config and the RNG states, so a resumed CPU run reproduces the loss
curve bit for bit.  A crash mid-write leaves the previous file intact; the
temporary file a ``kill -9`` leaves behind is removed by the next run
(:func:`remove_stale_temporaries`).  A ``checkpoint.pt`` that cannot be read
(a disk filled up, a copy cut short) is reported as corrupt, and the run falls
back to the newest kept ``checkpoint-epochNNNN.pt`` that reads, if any
(:func:`find_resumable`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from harmony_bench.atomic import atomic_write
from harmony_bench.runtime import process_alive

log = logging.getLogger(__name__)

LATEST = "checkpoint.pt"
FORMAT = "harmony-bench-pretrain/1"
KEPT = re.compile(r"^checkpoint-epoch(\d+)\.pt$")
# Temporaries of a write that never finished: harmony_bench.atomic names (.NAME.PID.HEX.tmp) and the
# older tempfile names (.NAME.RANDOM.partial) of earlier versions.
TEMPORARY = re.compile(r"^\.checkpoint[^/]*\.pt\.(?:(?P<pid>\d+)\.[0-9a-f]+\.tmp|[^.]+\.partial)$")


class CorruptCheckpointError(ValueError):
    """A pretraining checkpoint exists but cannot be read; the message names it and the way out."""


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then replace it (``harmony_bench.atomic``)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def remove_stale_temporaries(output: Path) -> list[Path]:
    """Delete checkpoint temporaries left by a killed run (never one of a live process); return them."""
    removed = []
    for path in output.glob(".checkpoint*"):
        match = TEMPORARY.match(path.name)
        if match is None or (match.group("pid") and _alive(int(match.group("pid")))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether another process with this id exists (ours has written nothing yet: it is a reused id)."""
    return pid != os.getpid() and process_alive(pid)


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
    """A checkpoint written by :func:`atomic_save` (safe load: tensors and plain data only).

    Raises:
        CorruptCheckpointError: the file cannot be read (truncated, damaged).
        ValueError: it reads, but is not a harmony-bench pretraining checkpoint.
    """
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CorruptCheckpointError(
            f"{path} is corrupt or truncated ({type(exc).__name__}: {first})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a harmony-bench pretraining checkpoint (format {FORMAT})")
    return state


def kept_checkpoints(output: Path) -> list[Path]:
    """The ``checkpoint-epochNNNN.pt`` files of a run, newest epoch first."""
    found = [(int(m.group(1)), p) for p in output.glob("checkpoint-epoch*.pt") if (m := KEPT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def find_resumable(output: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from: ``checkpoint.pt``, else the newest kept one that reads.

    A corrupt ``checkpoint.pt`` with a readable kept checkpoint gives a warning naming both (the
    steps after that epoch are computed again); with none, the error says to pass ``--no-resume``.

    Returns:
        ``(path, state)``, or None when the run has no checkpoint at all.

    Raises:
        CorruptCheckpointError: ``checkpoint.pt`` cannot be read and no kept checkpoint can either.
    """
    latest = output / LATEST
    if not latest.is_file():
        return None
    try:
        return latest, read_state(latest)
    except CorruptCheckpointError as exc:
        problem = exc
    for kept in kept_checkpoints(output):
        try:
            state = read_state(kept)
        except CorruptCheckpointError:
            continue
        log.warning(
            "%s; resuming from the previous kept checkpoint %s (step %d)", problem, kept, state["step"]
        )
        return kept, state
    raise CorruptCheckpointError(
        f"{problem}, and the run keeps no readable earlier checkpoint (checkpoint-epochNNNN.pt). Pass "
        "--no-resume to start over from step 0 (the file is then overwritten), or restore it from a copy"
    ) from problem


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
