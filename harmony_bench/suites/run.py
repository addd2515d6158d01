"""``suite run``: prepare data, run prerequisite steps, then every cell that has no record yet.

Resume is at the cell level: a cell whose completed record exists (in the
state file, or found by scanning the output directory) is skipped; a cell
that failed, or was running when the suite was killed, runs again.  A record
found by the scan counts only when it is the cell's result: same card,
checkpoint (by sha256), task, preset, protocol version, resolved config hash,
seed and data kind (``CellIdentity``).  Each cell runs in its own process
(``harmony_bench.suites.worker``); its log goes to
``<output>/.suite/<suite>/logs/<cell>.log`` and its cost (wall time, the GPUs
it used, GPU-hours, peak RSS and peak GPU memory) to the state file.  On one
machine cells run one after another; ``suite_cmd --launcher slurm`` submits
them as jobs instead (``slurm.py``), with the same worker measuring the cost.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harmony_bench.suites.spec import Cell, Step, Suite
from harmony_bench.suites.state import INTERRUPTED, cell_status, read_state, state_dir, take_lock, write_state
from harmony_bench.suites.worker import PARENT_ENV

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
MANIFEST = "harmony_bench_synth.json"


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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def substitute(text: str, values: dict[str, str]) -> str:
    """Fill ``{out}``, ``{data.KEY}``, ``{steps.S.FILE}`` placeholders; an unknown one is an error."""

    def repl(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"unknown placeholder {{{key}}} (known: {', '.join(sorted(values))})")
        return values[key]

    return PLACEHOLDER.sub(repl, text)


# --------------------------------------------------------------------------- data


def _synth_root(directory: Path) -> Path | None:
    manifests = sorted(directory.rglob(MANIFEST)) if directory.is_dir() else []
    return manifests[0].parent if manifests else None


def data_root(suite: Suite, key: str, given: dict[str, Path]) -> Path:
    """Root of data ``key``: ``--data KEY=PATH``, else the suite's ``root``/``env``, else ``data synth``."""
    if key in given:
        return given[key]
    item = suite.data.get(key, {})
    if "root" in item:
        return Path(os.path.expandvars(str(item["root"]))).expanduser()
    if item.get("env") and os.environ.get(item["env"]):
        return Path(os.environ[item["env"]])
    if "synth" not in item:
        hint = f" or set ${item['env']}" if item.get("env") else ""
        raise ValueError(f"suite {suite.name!r} needs data {key!r}: pass --data {key}=PATH{hint}")
    from harmony_bench.data.synth import synthesize

    out = suite.output / "data" / key
    existing = _synth_root(out)
    if existing is not None:
        return existing
    synth = dict(item["synth"])
    return synthesize(synth.pop("kind", key), out, **synth).root


def needed_data(suite: Suite, cells: list[Cell]) -> list[str]:
    """Data keys the given cells and their steps read, in first-use order."""
    keys = [c.task.data for c in cells]
    for step in suite.steps.values():
        keys += [
            m.group(1)[5:] for a in step.args for m in PLACEHOLDER.finditer(a) if m.group(1)[:5] == "data."
        ]
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------- processes


def run_process(
    argv: list[str], log: Path, pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None
) -> tuple[int, float, float]:
    """Run ``argv``, output to ``log``; return (exit code, wall seconds, peak RSS in MiB) of that child."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}   # {_now()}\n".encode())
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


def step_outputs(step: Step, paths: Paths, values: dict[str, str]) -> dict[str, str]:
    """``{steps.S.FILE: path}`` of what the step produces (relative paths are under its ``{out}``)."""
    out = paths.step_out(step.name)
    values = {**values, "out": str(out)}
    produced = {f"steps.{step.name}.{k}": substitute(v, values) for k, v in step.produces.items()}
    return {k: str(out / v) if not Path(v).is_absolute() else v for k, v in produced.items()}


def run_step(step: Step, paths: Paths, values: dict[str, str], state: dict[str, Any]) -> dict[str, str]:
    """Run a prerequisite step unless what it produces exists; return ``{steps.S.FILE: path}``."""
    out = paths.step_out(step.name)
    values = {**values, "out": str(out)}
    produced = step_outputs(step, paths, values)
    if all(Path(p).exists() for p in produced.values()):
        return produced
    out.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "harmony_bench", *(substitute(a, values) for a in step.args)]
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


# --------------------------------------------------------------------------- cells


def cell_spec(cell: Cell, suite: Suite, values: dict[str, str]) -> dict[str, Any]:
    """What the worker needs to run ``cell`` (plain JSON)."""
    return {
        "suite": suite.name,
        "cell": cell.id,
        "card": substitute(cell.backbone.card, values),
        "checkpoint": substitute(cell.backbone.checkpoint, values) if cell.backbone.checkpoint else None,
        "task": cell.task.name,
        "preset": cell.task.preset,
        "seed": cell.seed,
        "data_root": values[f"data.{cell.task.data}"],
        "output": str(suite.records),
        "overrides": cell.task.overrides,
    }


def card_name(card: str) -> str:
    """The backbone name records will carry: a card given by path is named by its ``name`` field.

    Aliases and hub names (``harmony``, ``timm:vit_small_patch16_224``) become the card a run records
    (``harmony-vit-s16-cc3m``, ``timm:vit_small_patch16_224.augreg_in21k_ft_in1k``); a name that cannot
    be resolved here is kept as written (the cell's run reports why).
    """
    if not card.endswith((".yaml", ".yml")):
        from harmony_bench.models.names import resolved_card_name

        try:
            return resolved_card_name(card)
        except Exception:  # unknown or not fetchable now: the run itself says so
            return card
    from harmony_bench.yaml_io import load_mapping

    path = Path(card)
    return str(load_mapping(path).get("name", path.stem)) if path.is_file() else path.stem


@dataclass(frozen=True)
class CellIdentity:
    """What a record must match to be a cell's result.

    The config hash is the resolved protocol (protocol file + preset + the
    cell's ``set:`` overrides), so a record made with other hyper-parameters
    never stands in for the cell even when task, preset and protocol version
    agree.  ``checkpoint`` is the file the cell names (None: the card's own).
    """

    backbone: str
    task: str
    preset: str | None
    protocol_version: str
    config_hash: str
    seed: int
    synthetic: bool
    checkpoint: str | None


def cell_identity(cell: Cell, suite: Suite, values: dict[str, str]) -> CellIdentity:
    """The identity of ``cell``'s result, computed without running it (``values``: step outputs)."""
    from harmony_bench.results import config_hash
    from harmony_bench.protocols import get_task

    task = get_task(cell.task.name)
    config = task.resolve_config(cell.task.preset, cell.task.overrides)
    checkpoint = substitute(cell.backbone.checkpoint, values) if cell.backbone.checkpoint else None
    return CellIdentity(
        backbone=card_name(substitute(cell.backbone.card, values)),
        task=task.name,
        preset=cell.task.preset or task.default_preset,
        protocol_version=str(task.protocol_version),
        config_hash=config_hash(config),
        seed=int(cell.seed),
        synthetic=suite.synthetic,
        checkpoint=checkpoint,
    )


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a checkpoint, cached per (path, size, mtime): every cell of a backbone asks again."""
    from harmony_bench.provenance import sha256_file

    return sha256_file(Path(path))


def checkpoint_matches(recorded: dict[str, Any], named: str | None) -> bool:
    """Same weights: by sha256 when the named file is here (paths move), else by the recorded source."""
    if named is None:
        return True
    path = Path(named)
    if recorded.get("sha256") and path.is_file():
        stat = path.stat()
        return recorded["sha256"] == _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    return recorded.get("source") == named


def record_matches(record: dict[str, Any], identity: CellIdentity) -> bool:
    """Whether ``record`` is a result of the cell: every field of the identity agrees."""
    task = record["task"]
    found = (
        record["backbone"]["name"],
        task["name"],
        task["preset"],
        str(task["protocol_version"]),
        task["config_hash"],
        int(record["seed"]),
        bool(record["dataset"]["synthetic"]),
    )
    wanted = (
        identity.backbone,
        identity.task,
        identity.preset,
        identity.protocol_version,
        identity.config_hash,
        identity.seed,
        identity.synthetic,
    )
    return found == wanted and checkpoint_matches(record["backbone"]["checkpoint"], identity.checkpoint)


RecordIndex = dict[tuple[str, str, int], list[dict[str, Any]]]


def index_records(records: list[dict[str, Any]]) -> RecordIndex:
    """Records by (backbone, task, seed), newest last, so matching a cell looks at a handful."""
    index: RecordIndex = {}
    for r in sorted(records, key=lambda r: (r["timing"]["end"], r["record_id"])):
        index.setdefault((r["backbone"]["name"], r["task"]["name"], int(r["seed"])), []).append(r)
    return index


def matching_records(index: RecordIndex, identity: CellIdentity) -> list[dict[str, Any]]:
    """The records of the cell with ``identity``, oldest first."""
    candidates = index.get((identity.backbone, identity.task, identity.seed), [])
    return [r for r in candidates if record_matches(r, identity)]


def existing_records(suite: Suite) -> RecordIndex:
    """The completed records in the suite's output, indexed for ``find_record``."""
    from harmony_bench.results import iter_records

    if not suite.records.is_dir():
        return {}
    records = iter_records([suite.records])[0]
    return index_records([r for r in records if r["status"]["state"] == "completed"])


def find_record(found: RecordIndex, identity: CellIdentity) -> str | None:
    """Path of the newest completed record of the cell, if any."""
    matches = matching_records(found, identity)
    return matches[-1]["_path"] if matches else None


# --------------------------------------------------------------------------- cost


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
        "gpu_hours": round(wall * gpus / 3600, 4),
        "peak_rss_mb": round(rss),
        "peak_gpu_mem_mb": cost.get("peak_gpu_mem_mb"),
    }


def outcome_entry(outcome: dict[str, Any], code: int, log: str) -> dict[str, Any]:
    """Status, record and error of a finished cell from its worker's result file."""
    done = code == 0 and outcome.get("state") == "completed"
    return {
        "status": "done" if done else "failed",
        "finished": _now(),
        "record": outcome.get("record"),
        "error": None if done else (outcome.get("error") or f"worker exited {code}; see {log}"),
        "log": log,
    }


def collect_job_results(state: dict[str, Any], paths: Paths) -> list[str]:
    """Fold the result files Slurm jobs left behind into ``state``; return the cell ids updated.

    A job runs the same worker as a local cell, so its result file holds the
    outcome and the worker-side cost.  Until that file exists the cell stays
    ``running`` (the job is queued or running), unless Slurm's accounting says
    the job is over (timeout, out of memory, cancelled, node failure): a job
    killed that way never writes its result, so its cell is marked failed and
    runs again on the next ``suite run``.
    """
    from harmony_bench.suites.slurm import DEAD_STATES, job_state

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
                state["cells"][cell_id] = {**entry, "status": "failed", "finished": _now(), "error": error}
                updated.append(cell_id)
            continue
        outcome = json.loads(result.read_text(encoding="utf-8"))
        code = 0 if outcome.get("state") == "completed" else 1
        fields = {**outcome_entry(outcome, code, log), **cost_fields(outcome.get("cost") or {})}
        state["cells"][cell_id] = {**entry, **fields}
        updated.append(cell_id)
    return updated


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
    spec_path = paths.cell_spec(cell.id)
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    result_path = spec_path.with_suffix(".result.json")
    result_path.unlink(missing_ok=True)
    attempts = state["cells"].get(cell.id, {}).get("attempts", 0) + 1
    state["cells"][cell.id] = {
        "status": "running",
        "pid": os.getpid(),
        "lock": str(paths.lock(cell.id)),
        "started": _now(),
        "attempts": attempts,
    }
    write_state(paths.state, state)
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


def data_values(suite: Suite, given_data: dict[str, Path], cells: list[Cell]) -> dict[str, str]:
    """``{data.KEY: root}`` for the data the cells and steps read (synthesising it when the suite says so)."""
    return {f"data.{key}": str(data_root(suite, key, given_data)) for key in needed_data(suite, cells)}


def needed_steps(cells: list[Cell]) -> list[str]:
    """The prerequisite steps of ``cells``, in first-use order."""
    return list(dict.fromkeys(c.backbone.after for c in cells if c.backbone.after))


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


def pending_cells(
    suite: Suite, cells: list[Cell], values: dict[str, str], state: dict[str, Any]
) -> list[Cell]:
    """Cells without a completed record; cells found done by a record scan are adopted into the state.

    Finished Slurm jobs are folded in first (their outcome and cost); a job
    that failed makes its cell pending again, one still queued keeps it running.
    """
    collect_job_results(state, suite_paths(suite))
    found = existing_records(suite)
    todo = []
    for cell in cells:
        entry, status = state["cells"].get(cell.id, {}), cell_status(state, cell.id)
        if status == "done" and entry.get("record") and Path(entry["record"]).exists():
            continue
        path = find_record(found, cell_identity(cell, suite, values))
        if path:
            state["cells"][cell.id] = {**entry, "status": "done", "record": path, "adopted": True}
            continue
        if status == "failed" and entry.get("status") == "running":  # its processes are gone
            state["cells"][cell.id] = {**entry, "status": "failed", "finished": _now(), "error": INTERRUPTED}
        if status != "running":  # running: a live local cell (its lock is held) or a submitted Slurm job
            todo.append(cell)
    return todo


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
