"""The suite's state file: per cell its status (pending/running/done/failed) and cost.

Written atomically (temp file + ``os.replace``) after every change, so a
suite killed at any moment leaves a readable file.  A cell left ``running``
by a process that no longer exists is treated as pending on the next run:
the cell is resumed, not the process.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

STATES = ("pending", "running", "done", "failed")


def state_dir(output: Path, suite: str) -> Path:
    """Hidden, so record scans (which skip hidden directories) never read the state or logs as records."""
    return Path(output) / ".suite" / suite


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (a 'running' entry whose owner died is stale)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_status(state: dict[str, Any], cell_id: str) -> str:
    """Pending / running / done / failed, with a stale 'running' reported as pending.

    A Slurm job's entry stays 'running' until its record appears (``run.pending_cells`` adopts it).
    """
    entry = state["cells"].get(cell_id)
    if not entry:
        return "pending"
    if entry["status"] == "running" and not entry.get("job_id") and not pid_alive(entry.get("pid")):
        return "pending"
    return entry["status"]
