"""Run a suite's cells as Slurm jobs, one job per cell, through submitit (optional dependency).

``harmony-bench suite run SUITE --launcher slurm [--slurm KEY=VALUE ...]`` submits, and returns at once:

* every prerequisite step whose outputs are missing (e.g. ``harmony-bench pretrain``) becomes its
  own job; the cells that load its card/checkpoint are submitted with the Slurm dependency
  ``afterok:<step job>``, so all steps run in parallel and each cell starts as soon as its own
  backbone exists — nothing waits on the submitting machine.  A step job fails (and its cells never
  start) when the command fails or leaves one of its ``produces`` files missing;
* every cell without a matching record becomes one job running ``harmony_bench.suites.worker`` on
  the cell's spec file, exactly what a local run does.  The worker measures the cell's cost itself
  (wall time, the GPUs it used, GPU-hours, peak RSS, peak GPU memory) and writes it with the
  outcome next to the spec.

The next ``suite run`` or ``suite show`` (anywhere that sees the output directory, e.g. a shared
file system) folds the jobs' result files into the state file: status, record and cost.  A failed
job's cell runs again on the next ``suite run``; a job still queued keeps its cell ``running``.  A job
Slurm ended before the worker could write its result (TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL, ...)
is recognised through ``sacct`` (:mod:`.jobs`) and its cell marked failed, so it too runs again.
The plan (what is pending, the spec files, attempts, the step commands) is :mod:`.plan`'s, shared
with the local executor (:mod:`.local`).
``--slurm`` values are submitit parameters (``slurm_partition=gpu``, ``gpus_per_node=1``,
``timeout_min=600``, ``slurm_additional_parameters={account: x}``); the dependency is merged into
``slurm_additional_parameters``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from harmony_bench.suites import plan
from harmony_bench.suites.jobs import cancel_jobs, job_over
from harmony_bench.suites.spec import Cell, Step, Suite
from harmony_bench.suites.state import Paths, now, read_state, suite_paths, write_state


def _job(spec_path: str) -> int:
    """What a cell's Slurm job runs (a module-level function so submitit can pickle it)."""
    from harmony_bench.suites.worker import main

    return main([spec_path])


def _step_job(argv: list[str], produces: list[str]) -> None:
    """What a step's Slurm job runs: the step's command (:func:`plan.step_argv`, as a local run runs it).

    Raising makes the job FAILED, so ``afterok`` cells never start.
    """
    code = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
    missing = [p for p in produces if not Path(p).exists()]
    if code != 0 or missing:
        raise RuntimeError(f"step `{' '.join(argv[1:])}` failed (exit {code}; missing {missing})")


def executor(paths: Paths, options: dict[str, Any], after: str | None = None) -> Any:
    """A submitit executor logging under the suite's bookkeeping directory; ``after``: a job to wait for."""
    try:
        import submitit
    except ImportError as exc:
        raise ImportError(
            "the slurm launcher needs submitit: pip install submitit (or run the suite locally)"
        ) from exc
    ex = submitit.AutoExecutor(folder=str(paths.root / "slurm" / "%j"))
    params = dict(options)
    if after is not None:
        extra = dict(params.get("slurm_additional_parameters") or {})
        extra["dependency"] = f"afterok:{after}"
        params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def submit_step(step: Step, paths: Paths, values: dict[str, str], state: dict[str, Any],
                options: dict[str, Any]) -> str | None:  # fmt: skip
    """Submit ``step`` unless its outputs exist (None) or a job of it is already queued (that job's id)."""
    produced = plan.step_outputs(step, paths, values)
    if all(Path(p).exists() for p in produced.values()):
        return None
    entry = state["steps"].get(step.name, {})
    if entry.get("status") == "running" and entry.get("job_id"):
        ended = job_over(str(entry["job_id"]))
        if ended is None:  # queued or running (or sacct cannot tell): its cells wait on it
            return str(entry["job_id"])
        _step_failed(state, step.name, str(entry["job_id"]), ended)
    paths.step_out(step.name).mkdir(parents=True, exist_ok=True)
    job = executor(paths, options).submit(
        _step_job, plan.step_argv(step, paths, values), list(produced.values())
    )
    state["steps"][step.name] = {"status": "running", "job_id": job.job_id, "started": now()}
    write_state(paths.state, state)
    print(f"submitted step {step.name} as job {job.job_id}")
    return str(job.job_id)


def _step_failed(state: dict[str, Any], name: str, job_id: str, ended: str) -> None:
    """A step job is over without its outputs: record it, and free the cells that waited on it.

    Their ``afterok`` dependency can never be met, so Slurm would keep them PENDING for good; they are
    cancelled and marked failed, so this ``suite run`` submits them again after the step's new job.
    """
    error = f"Slurm job {job_id} of step {name} ended {ended} without its outputs"
    state["steps"][name] = {**state["steps"][name], "status": "failed", "finished": now(), "error": error}
    waiting = [
        cell_id
        for cell_id, entry in state["cells"].items()
        if entry.get("status") == "running" and str(entry.get("after")) == job_id
    ]
    cancel_jobs([str(state["cells"][c]["job_id"]) for c in waiting if state["cells"][c].get("job_id")])
    for cell_id in waiting:
        state["cells"][cell_id] = {
            **state["cells"][cell_id],
            "status": "failed",
            "finished": now(),
            "error": error,
        }
    print(f"step {name}: {error}; submitting it again" + (f" with {len(waiting)} cell(s)" if waiting else ""))


def submit_cell(cell: Cell, spec: dict[str, Any], paths: Paths, state: dict[str, Any],
                options: dict[str, Any], after: str | None) -> str:  # fmt: skip
    """Submit one cell (after its step's job, if any); the state shows it running with its job id."""
    spec_path = plan.write_cell_spec(paths, cell.id, spec)
    job = executor(paths, options, after).submit(_job, str(spec_path))
    plan.mark_running(state, paths, cell.id, job_id=job.job_id, pid=None, after=after)
    print(f"submitted {cell.id} as job {job.job_id}" + (f" (after job {after})" if after else ""))
    return str(job.job_id)


def submit_suite(suite: Suite, options: dict[str, Any], given_data: dict[str, Path] | None = None,
                 cells: list[Cell] | None = None) -> list[str]:  # fmt: skip
    """Submit the missing steps, then every missing cell with a dependency on its step; return job ids."""
    paths = suite_paths(suite)
    state = read_state(paths.state)
    cells = cells if cells is not None else suite.cells
    values = plan.data_values(suite, given_data or {}, cells)
    step_jobs: dict[str, str | None] = {}
    for name in plan.needed_steps(cells):
        step = suite.steps[name]
        step_jobs[name] = submit_step(step, paths, values, state, options)
        values.update(plan.step_outputs(step, paths, values))  # where the cells will find the step's files
    ids = [job for job in step_jobs.values() if job]
    for cell in plan.pending_cells(suite, cells, values, state):
        after = step_jobs.get(cell.backbone.after) if cell.backbone.after else None
        ids.append(submit_cell(cell, plan.cell_spec(cell, suite, values), paths, state, options, after))
    write_state(paths.state, state)
    return ids
