"""The suite's state file: per cell its status (pending/running/done/failed) and cost.

Written atomically (temp file + ``os.replace``) after every change, so a
suite killed at any moment leaves a readable file.

A local cell holds an exclusive lock on ``cells/<cell>.lock`` (``fcntl.flock``)
while it runs: ``suite run`` takes it before starting the cell's worker and
hands the same open file to the worker, so the lock is held while either of
them lives, and the kernel releases it when both are gone, even after
``kill -9``.  The worker also dies with the ``suite run`` that started it
(Linux: ``PR_SET_PDEATHSIG``), so killing the runner does not leave an orphan
computing the cell.  A cell left ``running`` in the state file is *running*
while its lock is held (by this or another ``suite run``), and *failed*
(interrupted) once it is free: a rerun never starts a second copy of a live
cell, and reruns a dead one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.atomic import atomic_write_json
from harmony_bench.runtime import process_alive

if TYPE_CHECKING:
    from harmony_bench.suites.spec import Suite

STATES = ("pending", "running", "done", "failed")


def state_dir(output: Path, suite: str) -> Path:
    """Hidden, so record scans (which skip hidden directories) never read the state or logs as records."""
    return Path(output) / ".suite" / suite


def now() -> str:
    """UTC now as the state file writes it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_state(path: Path) -> dict[str, Any]:
    """The state, or an empty one; a corrupt file is an error naming it (never silently reset)."""
    if not path.exists():
        return {"cells": {}, "steps": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: suite state is not valid JSON ({exc}); delete it to start over") from exc
    state.setdefault("cells", {})
    state.setdefault("steps", {})
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically."""
    atomic_write_json(path, state)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (a 'running' entry whose owner died is stale)."""
    return process_alive(pid)


def lock_holder(path: Path | str | None) -> int | None:
    """The pid written in a cell's lock file while a live process holds the lock, else None."""
    if not path:
        return None
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held exclusively: the worker is alive
            text = os.read(fd, 64).decode("ascii", "replace").split()
            return int(text[0]) if text and text[0].isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def take_lock(path: Path) -> int:
    """Lock a cell for this process and the worker it hands the returned fd to (``pass_fds``).

    The lock lives as long as one process keeps the fd open; the file names the pid that took it.

    Raises:
        RuntimeError: a live process holds it already (the cell is running elsewhere).
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"the cell is already running (its lock {path} is held by pid {lock_holder(path)})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def cell_status(state: dict[str, Any], cell_id: str) -> str:
    """Pending / running / done / failed; a 'running' local cell whose processes are gone is failed.

    A local cell is alive while its lock is held (see the module docstring).  A Slurm job's entry
    stays 'running' until its record appears (``plan.pending_cells`` adopts it) or Slurm says the job
    ended.
    """
    entry = state["cells"].get(cell_id)
    if not entry:
        return "pending"
    if entry["status"] == "running" and not entry.get("job_id") and not cell_alive(entry):
        return "failed"
    return entry["status"]


def cell_alive(entry: dict[str, Any]) -> bool:
    """Whether a 'running' local cell is still computed: its lock is held (older entries: its pid lives)."""
    if entry.get("lock"):
        return lock_holder(entry["lock"]) is not None
    return pid_alive(entry.get("pid"))


INTERRUPTED = "interrupted: the suite run or its worker was killed before the cell finished"


@dataclass
class Paths:
    """Where a suite keeps its bookkeeping."""

    root: Path

    @property
    def state(self) -> Path:
        """The state file."""
        return self.root / "state.json"

    def log(self, name: str) -> Path:
        """A cell's or step's log file."""
        return self.root / "logs" / f"{name}.log"

    def cell_spec(self, cell_id: str) -> Path:
        """What the worker reads (and writes ``.result.json`` next to)."""
        return self.root / "cells" / f"{cell_id}.json"

    def lock(self, cell_id: str) -> Path:
        """The cell's lock file (held while the cell runs, see ``state``)."""
        return self.root / "cells" / f"{cell_id}.lock"

    def step_out(self, step: str) -> Path:
        """A prerequisite step's own directory (``{out}``)."""
        return self.root / "steps" / step


def suite_paths(suite: Suite) -> Paths:
    """The suite's bookkeeping directory under its output."""
    return Paths(state_dir(suite.output, suite.name))
