"""Slurm job accounting: fold the result files of submitted jobs into the suite state.

Read by every ``suite run`` and ``suite show`` (local or not), so it sits below both executors:
a job runs the same worker as a local cell and leaves the same result file; ``sacct`` tells a job
Slurm killed before it could write one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from harmony_bench.suites.state import Paths, now
from harmony_bench.suites.worker import cost_fields, outcome_entry

# sacct states of a job that is over without having run to its end (it wrote no result file)
DEAD_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
)


def job_state(job_id: str) -> str | None:
    """The Slurm state of ``job_id`` from ``sacct`` (e.g. ``TIMEOUT``); None where sacct cannot tell.

    Asked only for a cell still ``running`` with no result file, so a machine without Slurm (or an
    accounting database that does not answer) leaves the cell as it is rather than guessing.
    """
    if shutil.which("sacct") is None:
        return None
    argv = ["sacct", "-j", job_id, "-X", "--noheader", "--parsable2", "--format", "State"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    lines = out.split()
    return lines[0] if lines else None  # "CANCELLED by 1234" -> "CANCELLED"


def job_over(job_id: str) -> str | None:
    """The state of a job Slurm has finished with (dead or COMPLETED); None while it may still run."""
    state = job_state(job_id)
    return state if state in DEAD_STATES or state == "COMPLETED" else None


def cancel_jobs(job_ids: list[str]) -> None:
    """Best-effort ``scancel`` (jobs whose dependency can never be met would stay PENDING for good)."""
    if job_ids and shutil.which("scancel") is not None:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30, check=False)


def collect_job_results(state: dict[str, Any], paths: Paths) -> list[str]:
    """Fold the result files Slurm jobs left behind into ``state``; return the cell ids updated.

    A job runs the same worker as a local cell, so its result file holds the
    outcome and the worker-side cost.  Until that file exists the cell stays
    ``running`` (the job is queued or running), unless Slurm's accounting says
    the job is over (timeout, out of memory, cancelled, node failure): a job
    killed that way never writes its result, so its cell is marked failed and
    runs again on the next ``suite run``.
    """
    updated = []
    for cell_id, entry in state["cells"].items():
        if entry.get("status") != "running" or not entry.get("job_id"):
            continue
        result = paths.cell_spec(cell_id).with_suffix(".result.json")
        log = str(paths.root / "slurm" / str(entry["job_id"]))
        if not result.exists():
            ended = job_state(str(entry["job_id"]))
            if ended in DEAD_STATES:
                error = f"Slurm job {entry['job_id']} ended {ended} without a result; see {log}"
                state["cells"][cell_id] = {**entry, "status": "failed", "finished": now(), "error": error}
                updated.append(cell_id)
            continue
        outcome = json.loads(result.read_text(encoding="utf-8"))
        code = 0 if outcome.get("state") == "completed" else 1
        fields = {**outcome_entry(outcome, code, log), **cost_fields(outcome.get("cost") or {})}
        state["cells"][cell_id] = {**entry, **fields}
        updated.append(cell_id)
    return updated
