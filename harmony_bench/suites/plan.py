"""The suite plan: cells, placeholders, data roots, cell identities, record matching and what is pending.

Everything both executors need and nothing that runs a cell: :mod:`.local` runs the pending cells one
after another on this machine, :mod:`.slurm` submits them as jobs; both write the same spec file, count
attempts the same way (:func:`write_cell_spec`, :func:`mark_running`) and run a step with the same
command (:func:`step_argv`).

Resume is at the cell level: a cell whose completed record exists (in the
state file, or found by scanning the output directory) is skipped; a cell
that failed, or was running when the suite was killed, runs again.  A record
found by the scan counts only when it is the cell's result: same card,
checkpoint (by sha256), task, preset, protocol version, resolved config hash,
seed and data kind (``CellIdentity``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_bench.atomic import atomic_write_text
from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.suites.jobs import collect_job_results
from harmony_bench.suites.spec import Cell, Step, Suite
from harmony_bench.suites.state import INTERRUPTED, Paths, cell_status, now, suite_paths, write_state

PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


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
    manifests = sorted(directory.rglob(MANIFEST_NAME)) if directory.is_dir() else []
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


def step_outputs(step: Step, paths: Paths, values: dict[str, str]) -> dict[str, str]:
    """``{steps.S.FILE: path}`` of what the step produces (relative paths are under its ``{out}``)."""
    out = paths.step_out(step.name)
    values = {**values, "out": str(out)}
    produced = {f"steps.{step.name}.{k}": substitute(v, values) for k, v in step.produces.items()}
    return {k: str(out / v) if not Path(v).is_absolute() else v for k, v in produced.items()}


def write_cell_spec(paths: Paths, cell_id: str, spec: dict[str, Any]) -> Path:
    """Write what the worker reads, and remove a stale result file (it is not this attempt's)."""
    spec_path = paths.cell_spec(cell_id)
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_path, json.dumps(spec, indent=2))
    spec_path.with_suffix(".result.json").unlink(missing_ok=True)
    return spec_path


def mark_running(state: dict[str, Any], paths: Paths, cell_id: str, **fields: Any) -> int:
    """Mark the cell ``running`` (one more attempt) with ``fields`` (pid, lock, job id); return attempts."""
    attempts = state["cells"].get(cell_id, {}).get("attempts", 0) + 1
    state["cells"][cell_id] = {"status": "running", **fields, "started": now(), "attempts": attempts}
    write_state(paths.state, state)
    return attempts


def step_argv(step: Step, paths: Paths, values: dict[str, str]) -> list[str]:
    """The command of a prerequisite step, run the same way locally and as a Slurm job."""
    out = paths.step_out(step.name)
    return [
        sys.executable,
        "-m",
        "harmony_bench",
        *(substitute(a, {**values, "out": str(out)}) for a in step.args),
    ]


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


def card_family(card: str, name: str) -> str | None:
    """A cell's backbone family (``swin`` picks a task's ``family_presets``); None when unknown."""
    path = Path(card)
    if card.endswith((".yaml", ".yml")):
        from harmony_bench.yaml_io import load_mapping

        return load_mapping(path).get("family") if path.is_file() else None
    from harmony_bench.cards import get_card

    try:
        return get_card(name).family
    except Exception:  # not a registered card (a hub name): the run resolves and records it
        return None


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
    from harmony_bench.protocols import get_task
    from harmony_bench.results import config_hash

    task = get_task(cell.task.name)
    written = substitute(cell.backbone.card, values)
    name = card_name(written)
    preset = task.preset_for(cell.task.preset, card_family(written, name))  # as the run records it
    config = task.resolve_config(preset, cell.task.overrides)
    checkpoint = substitute(cell.backbone.checkpoint, values) if cell.backbone.checkpoint else None
    return CellIdentity(
        backbone=name,
        task=task.name,
        preset=preset,
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


# --------------------------------------------------------------------------- the plan


def data_values(suite: Suite, given_data: dict[str, Path], cells: list[Cell]) -> dict[str, str]:
    """``{data.KEY: root}`` for the data the cells and steps read (synthesising it when the suite says so)."""
    return {f"data.{key}": str(data_root(suite, key, given_data)) for key in needed_data(suite, cells)}


def needed_steps(cells: list[Cell]) -> list[str]:
    """The prerequisite steps of ``cells``, in first-use order."""
    return list(dict.fromkeys(c.backbone.after for c in cells if c.backbone.after))


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
            state["cells"][cell.id] = {**entry, "status": "failed", "finished": now(), "error": INTERRUPTED}
        if status != "running":  # running: a live local cell (its lock is held) or a submitted Slurm job
            todo.append(cell)
    return todo
