"""Run one suite cell in its own process: ``python -m harmony_bench.suites.worker CELL.json``.

One process per cell isolates cells from each other (a crash, a leak, a
library's global state) and lets the parent measure the cell's own peak
memory.  The same entry point runs a cell as a Slurm job.  It writes a small
result file next to the cell spec: the record path, the outcome and the cost
as the worker measured it (wall time, the GPUs the cell used, GPU-hours, peak
RSS, peak GPU memory) — a Slurm job has no parent on the submitting machine,
so the worker's own measurement is the one that reaches the suite's state.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harmony_bench.atomic import atomic_write_json
from harmony_bench.runtime import world_size
from harmony_bench.suites.state import now

# Set by ``suite run`` to its pid: the worker then dies with it instead of computing on as an orphan.
PARENT_ENV = "HARMONY_BENCH_SUITE_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> bool:
    """Ask the kernel to kill this process when ``parent`` dies (Linux ``prctl(PR_SET_PDEATHSIG)``).

    A ``suite run`` killed with ``kill -9`` cannot stop its worker itself; without this the worker
    would compute on and a rerun would start the same cell beside it.  Returns whether the request
    took effect (not on other systems; there the cell's lock still keeps a rerun off a live cell).
    Exits at once when the parent is already gone (it died before the request was made).
    """
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    return armed


def _cuda() -> Any | None:
    """``torch.cuda`` if torch is already imported (a cell that never imported torch used no GPU)."""
    torch = sys.modules.get("torch")
    return getattr(torch, "cuda", None) if torch is not None else None


def gpus_used(cuda: Any | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """GPUs the cell ran on: devices this process allocated memory on × processes of the run.

    Counting ``device_count()`` would bill every GPU the node exposes (all of
    them when ``CUDA_VISIBLE_DEVICES`` is unset) for a cell that used one.  A
    device counts when torch's allocator ever held memory on it; under torchrun
    each of ``WORLD_SIZE`` processes drives its own device(s).  On CPU: 0.
    """
    cuda = _cuda() if cuda is None else cuda
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return 0
    local = sum(1 for i in range(cuda.device_count()) if cuda.max_memory_allocated(i) > 0)
    return local * max(1, world_size(environ))


def peak_gpu_mem_mb(cuda: Any | None = None) -> float | None:
    """Largest peak allocation on any device this process used, in MiB (None without a GPU)."""
    cuda = _cuda() if cuda is None else cuda
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return None
    peaks = [cuda.max_memory_allocated(i) for i in range(cuda.device_count())]
    return round(max(peaks, default=0) / 2**20, 1) or None


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def gpu_hours(wall_s: float, gpus: int) -> float:
    """GPU-hours of a cell: its wall time × the GPUs it actually used (never the node's count)."""
    return wall_s * gpus / 3600


def cost_fields(cost: dict[str, Any], wall: float | None = None, rss: float | None = None) -> dict[str, Any]:
    """The state file's cost of a cell from the worker's own measurement.

    A local run measures wall time and peak RSS from the parent too (they then
    include the interpreter start); a Slurm job has only the worker's.  GPU-hours
    use the GPUs the cell actually ran on (``worker.gpus_used``), never the
    number of GPUs the node happens to have.
    """
    wall = float(cost.get("wall_s") or 0.0) if wall is None else wall
    rss = float(cost.get("peak_rss_mb") or 0.0) if rss is None else rss
    gpus = int(cost.get("gpus") or 0)
    return {
        "wall_s": round(wall, 2),
        "gpus": gpus,
        "gpu_hours": round(gpu_hours(wall, gpus), 4),
        "peak_rss_mb": round(rss),
        "peak_gpu_mem_mb": cost.get("peak_gpu_mem_mb"),
    }


def outcome_entry(outcome: dict[str, Any], code: int, log: str) -> dict[str, Any]:
    """Status, record and error of a finished cell from its worker's result file."""
    done = code == 0 and outcome.get("state") == "completed"
    return {
        "status": "done" if done else "failed",
        "finished": now(),
        "record": outcome.get("record"),
        "error": None if done else (outcome.get("error") or f"worker exited {code}; see {log}"),
        "log": log,
    }


def measure_cost(wall_s: float) -> dict[str, Any]:
    """The cell's cost as this process saw it; ``gpu_hours`` uses the GPUs actually used."""
    gpus = gpus_used()
    return {
        "wall_s": round(wall_s, 3),
        "gpus": gpus,
        "gpu_hours": round(gpu_hours(wall_s, gpus), 6),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mem_mb": peak_gpu_mem_mb(),
    }


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the cell described by ``spec`` and return its outcome (never raises for a failed run)."""
    from harmony_bench.runner import RunFailed, RunOptions, run

    options = RunOptions(
        checkpoint=spec.get("checkpoint"),
        data_root=Path(spec["data_root"]) if spec.get("data_root") else None,
        preset=spec.get("preset"),
        seed=int(spec["seed"]),
        output=Path(spec["output"]),
        overrides=spec.get("overrides") or {},
    )
    outcome: dict[str, Any] = {"state": "completed", "record": None, "error": None}
    try:
        outcome["record"] = str(run(spec["card"], spec["task"], options))  # any --backbone name or card file
    except RunFailed as exc:
        outcome.update(state="failed", record=str(exc.record_path), error=str(exc))
    except Exception as exc:  # preflight / usage errors: no record was written
        outcome.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Read the cell spec, run it, write ``<spec>.result.json`` with its cost; exit 0 when it completed."""
    if os.environ.get(PARENT_ENV):
        die_with_parent(int(os.environ.pop(PARENT_ENV)))
    spec_path = Path((argv or sys.argv[1:])[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    outcome = run_cell(spec)
    outcome["cost"] = measure_cost(time.perf_counter() - started)
    result = spec_path.with_suffix(".result.json")
    atomic_write_json(result, outcome, sort_keys=False)
    if outcome["error"]:
        print(f"error: {outcome['error']}", file=sys.stderr)
    return 0 if outcome["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
