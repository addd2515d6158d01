"""``suite run`` on this machine: prepare data, run prerequisite steps, then every pending cell in order.

What is pending and where things go comes from :mod:`.plan`.  Each cell runs in its own process
(``harmony_bench.suites.worker``); its log goes to ``<output>/.suite/<suite>/logs/<cell>.log`` and its
cost (wall time, the GPUs it used, GPU-hours, peak RSS and peak GPU memory) to the state file.
``suite run --launcher slurm`` submits the same cells as jobs instead (:mod:`.slurm`), with the same
worker measuring the cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmony_bench.suites.plan import (
    cell_spec,
    data_values,
    mark_running,
    needed_steps,
    pending_cells,
    step_argv,
    step_outputs,
    write_cell_spec,
)
from harmony_bench.suites.spec import Cell, Step, Suite
from harmony_bench.suites.state import Paths, now, read_state, suite_paths, take_lock, write_state
from harmony_bench.suites.worker import PARENT_ENV, cost_fields, outcome_entry


def run_process(
    argv: list[str], log: Path, pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, float, float]:
    """Run ``argv``, output to ``log``; return (exit code, wall seconds, peak RSS in MiB) of that child."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}   # {now()}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
            env={**os.environ, **env} if env else None,
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the sum of all children
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024


def run_step(step: Step, paths: Paths, values: dict[str, str], state: dict[str, Any]) -> dict[str, str]:
    """Run a prerequisite step unless what it produces exists; return ``{steps.S.FILE: path}``."""
    produced = step_outputs(step, paths, values)
    if all(Path(p).exists() for p in produced.values()):
        return produced
    paths.step_out(step.name).mkdir(parents=True, exist_ok=True)
    argv = step_argv(step, paths, values)
    code, wall, rss = run_process(argv, paths.log(f"step-{step.name}"))
    missing = [p for p in produced.values() if not Path(p).exists()]
    ok = code == 0 and not missing
    state["steps"][step.name] = {
        "status": "done" if ok else "failed",
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss),
    }
    write_state(paths.state, state)
    if not ok:
        raise RuntimeError(
            f"step {step.name!r} failed (exit {code}; missing {missing}); "
            f"see {paths.log(f'step-{step.name}')}"
        )
    return produced


def run_cell(cell: Cell, spec: dict[str, Any], paths: Paths, state: dict[str, Any]) -> dict[str, Any] | None:
    """Run one cell in a worker process, keeping the state file current before and after.

    The cell's lock is taken first and shared with the worker (see ``state``); the worker dies with
    this process.  Returns None, running nothing, when another live ``suite run`` holds the cell.
    """
    try:
        lock = take_lock(paths.lock(cell.id))
    except RuntimeError:
        return None
    try:
        return _run_locked_cell(cell, spec, paths, state, lock)
    finally:
        os.close(lock)


def _run_locked_cell(
    cell: Cell, spec: dict[str, Any], paths: Paths, state: dict[str, Any], lock: int
) -> dict[str, Any]:
    spec_path = write_cell_spec(paths, cell.id, spec)
    result_path = spec_path.with_suffix(".result.json")
    attempts = mark_running(state, paths, cell.id, pid=os.getpid(), lock=str(paths.lock(cell.id)))
    argv = [sys.executable, "-m", "harmony_bench.suites.worker", str(spec_path)]
    env = {PARENT_ENV: str(os.getpid())}
    code, wall, rss = run_process(argv, paths.log(cell.id), pass_fds=(lock,), env=env)
    outcome = json.loads(result_path.read_text()) if result_path.exists() else {}
    entry = {"attempts": attempts, **outcome_entry(outcome, code, str(paths.log(cell.id)))}
    entry.update(cost_fields(outcome.get("cost") or {}, wall=wall, rss=rss))
    state["cells"][cell.id] = entry
    write_state(paths.state, state)
    return entry


# --------------------------------------------------------------------------- the suite


def prepare(suite: Suite, given_data: dict[str, Path], cells: list[Cell], state: dict[str, Any], paths: Paths,
            note: Callable[[str], None] = print) -> dict[str, str]:  # fmt: skip
    """Data roots and step outputs as placeholder values; runs data synthesis and steps as needed."""
    values = data_values(suite, given_data, cells)
    for name in needed_steps(cells):
        note(f"step {name} ...")
        values.update(run_step(suite.steps[name], paths, values, state))
    return values


class _Ticker:
    """Refresh the progress bar once a second so its clock moves while a long cell runs."""

    def __init__(self, bar: Any) -> None:
        self.bar, self.stop = bar, threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            self.bar.refresh()

    def __enter__(self) -> _Ticker:
        if sys.stderr.isatty():  # in a CI log every refresh would be a new line
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def run_suite(suite: Suite, given_data: dict[str, Path] | None = None, cells: list[Cell] | None = None,
              progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run every missing cell of ``suite`` (or of ``cells``) in order; returns the final state."""
    from tqdm import tqdm

    paths = suite_paths(suite)
    state = read_state(paths.state)
    cells = cells if cells is not None else suite.cells
    values = prepare(suite, given_data or {}, cells, state, paths)
    todo = pending_cells(suite, cells, values, state)
    write_state(paths.state, state)
    done = len(cells) - len(todo)
    print(f"suite {suite.name}: {len(cells)} cells, {done} done, {len(todo)} to run → {suite.output}")
    total = sum(c.task.est_s for c in todo)
    bar_format = "{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]"
    bar = tqdm(total=total, disable=not progress or not todo, bar_format=bar_format, file=sys.stderr)
    with bar, _Ticker(bar):
        for i, cell in enumerate(todo, 1):
            bar.set_description_str(f"cell {i}/{len(todo)} {cell.id}")
            entry = run_cell(cell, cell_spec(cell, suite, values), paths, state)
            if entry is None:
                bar.write(f"  skipped {cell.id}: running in another `suite run`")
                bar.update(cell.task.est_s)
                continue
            mark = "done  " if entry["status"] == "done" else "FAILED"
            bar.write(f"  {mark} {cell.id}  {entry['wall_s']:.1f} s, peak RSS {entry['peak_rss_mb']} MiB")
            if entry["error"]:
                bar.write(f"         {entry['error'].splitlines()[0]}")
            bar.update(cell.task.est_s)
    return state
