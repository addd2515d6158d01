"""The result record: one JSON file per run (backbone × task × seed) with full provenance.

A record is the unit everything downstream reads (tables, validation, the
demo), so it is built the same way for every task and written so that a file
under ``results/`` is always a whole, valid record:

* validated before writing — an invalid record is refused with its problems,
  not stored for a table to trip over months later;
* written to a hidden temp file in the target directory, fsynced, then
  published with ``os.link``, which fails rather than replace an existing
  file — two runs can never overwrite each other, and a crash mid-write
  leaves no partial ``*.json`` behind;
* named ``{backbone}__{task}__seed{N}__{start}__{id8}.json`` so a directory
  listing is readable and two runs started in the same second still differ.

Metrics are nested groups of typed leaves (``{"value", "higher_is_better",
"unit"?}``) instead of flat string keys, so per-class results nest under one
group and every number says which way is better.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harmony_bench.atomic import publish_new
from harmony_bench.results.canonical import config_hash, to_jsonable
from harmony_bench.results.validate import RecordError, read_record_file, validate_record

SCHEMA_VERSION = 1
# The runner puts task work dirs under the records dir; mmengine writes its own *.json logs there.
SKIP_DIRS = frozenset({"work"})
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME_PART = 64


# --------------------------------------------------------------------------- metrics


def metric(value: Any, higher_is_better: bool = True, unit: str | None = None) -> dict[str, Any]:
    """One metric leaf: ``{"value": float | None, "higher_is_better": bool[, "unit": str]}``.

    Accepts Python, NumPy and 0-d torch numbers.  NaN and ±inf become None
    (JSON has no NaN; a value that could not be computed is "no value", not a
    number a table should average).  Booleans and strings are refused: they
    are almost always a bug in the task runner.
    """
    if value is not None:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError(f"a metric value must be a number or None, not {type(value).__name__}")
        if hasattr(value, "item"):  # numpy / torch scalar
            value = value.item()
        value = float(value)
        if not math.isfinite(value):
            value = None
    leaf: dict[str, Any] = {"value": value, "higher_is_better": bool(higher_is_better)}
    if unit is not None:
        leaf["unit"] = str(unit)
    return leaf


def is_metric_leaf(node: object) -> bool:
    """A leaf has ``value`` or ``higher_is_better``; group names may not use those words (schema rule)."""
    return isinstance(node, Mapping) and ("value" in node or "higher_is_better" in node)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Nested metrics → ``{"top1": 81.2, "per_class_iou.wall": 72.0}`` in insertion order.

    Dots cannot occur in metric names (the schema forbids them), so the dotted
    keys are unambiguous.
    """
    flat: dict[str, float | None] = {}
    for name, node in metrics.items():
        key = f"{prefix}{name}"
        if is_metric_leaf(node):
            flat[key] = node.get("value")
        elif isinstance(node, Mapping):
            flat.update(flatten_metrics(node, f"{key}."))
        else:
            raise TypeError(
                f"metric {key!r} is {type(node).__name__}, expected a leaf (see metric()) or a group"
            )
    return flat


# --------------------------------------------------------------------------- building


def _utc_iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a 'Z'; a naive datetime is taken as local time (Python's rule)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(error: BaseException | None) -> dict[str, Any]:
    """``completed`` with no error, or ``failed`` with the exception's type, message and traceback."""
    if error is None:
        return {"state": "completed", "error": None}
    formatted = traceback.format_exception(type(error), error, error.__traceback__)
    return {
        "state": "failed",
        "error": {"type": type(error).__name__, "message": str(error), "traceback": "".join(formatted)},
    }


def build_record(
    *,
    backbone: dict[str, Any],
    task: dict[str, Any],
    dataset: dict[str, Any],
    seed: int,
    metrics: dict[str, Any],
    start: datetime,
    end: datetime,
    error: BaseException | None = None,
    output_dir: str | None = None,
    artifacts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a schema-v1 record; the caller gives what the run did, this adds the provenance.

    ``task`` is ``{name, protocol_version, preset, config[, deviations]}``; the config hash,
    status, timing, hardware, software and git blocks are filled in here so
    every task records them the same way.  The result is not validated here
    (``write_record`` does that) so a caller can inspect a bad record.
    """
    from harmony_bench import __version__
    from harmony_bench.provenance import collect_hardware, collect_software, git_state

    config = to_jsonable(task.get("config"), "task.config")
    protocol_version = task.get("protocol_version")
    task_block = {
        "name": task.get("name"),
        "protocol_version": None if protocol_version is None else str(protocol_version),
        "preset": task.get("preset"),
        "config": config,
        "config_hash": config_hash(config),
    }
    if task.get("deviations") is not None:
        task_block["deviations"] = [str(d) for d in task["deviations"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "record_id": uuid.uuid4().hex,
        "harmony_bench_version": __version__,
        "status": _status(error),
        "backbone": to_jsonable(backbone, "backbone"),
        "task": task_block,
        "dataset": to_jsonable(dataset, "dataset"),
        "seed": int(seed),
        "metrics": to_jsonable(metrics, "metrics"),
        "timing": {
            "start": _utc_iso(start),
            "end": _utc_iso(end),
            "duration_s": round((end - start).total_seconds(), 6),
        },
        "hardware": collect_hardware(),
        "software": collect_software(),
        "git": git_state(),
        "output_dir": None if output_dir is None else str(output_dir),
        "artifacts": to_jsonable(artifacts or {}, "artifacts"),
    }


# --------------------------------------------------------------------------- writing


def _safe_name(name: object) -> str:
    """A file-name-safe version of a backbone or task name ('org/model:v2' → 'org-model-v2')."""
    cleaned = _UNSAFE_NAME_CHARS.sub("-", str(name)).strip(".-")[:_MAX_NAME_PART]
    return cleaned or "unnamed"


def record_filename(record: dict[str, Any]) -> str:
    """``{backbone}__{task}__seed{seed}__{YYYYmmddTHHMMSSZ}__{record_id[:8]}.json``.

    The start time sorts runs chronologically in a listing; the id prefix keeps
    two runs started in the same second apart.
    """
    start = datetime.fromisoformat(record["timing"]["start"].replace("Z", "+00:00"))
    stamp = start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parts = [
        _safe_name(record["backbone"]["name"]),
        _safe_name(record["task"]["name"]),
        f"seed{int(record['seed'])}",
        stamp,
        _safe_name(record["record_id"][:8]),
    ]
    return "__".join(parts) + ".json"


def write_record(record: dict[str, Any], out_dir: Path) -> Path:
    """Validate ``record`` and write it under ``out_dir`` atomically; return the new file's path.

    Raises:
        RecordError: the record is invalid (nothing is written).
        FileExistsError: a file of the same name exists (it is left untouched).
    """
    out_dir = Path(out_dir)
    problems = validate_record(record)
    if problems:
        raise RecordError(
            out_dir, problems, summary=f"refusing to write an invalid result record to {out_dir}"
        )
    final = out_dir / record_filename(record)

    def dump(handle: Any) -> None:
        json.dump(record, codecs.getwriter("utf-8")(handle), indent=2, ensure_ascii=False, allow_nan=False)
        handle.write(b"\n")

    # publish_new: hidden temp name (a reader scanning for *.json never sees a half-written record), then a
    # hard link into place, which fails on an existing name: records are never overwritten.
    publish_new(final, dump)
    return final


# --------------------------------------------------------------------------- reading


def load_record(path: Path) -> dict[str, Any]:
    """Parse and validate one record file; RecordError lists the path and every problem."""
    obj, problems = read_record_file(Path(path))
    if problems:
        raise RecordError(path, problems)
    return obj  # type: ignore[return-value]  # validated: a dict


def _expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given, directories as their ``*.json`` files (recursively, sorted).

    Hidden files and directories are skipped (temp files, macOS ``._*``
    resource forks), as are ``work/`` directories, where the runner puts task
    work dirs whose JSON logs are not records.
    """
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
            for name in sorted(files):
                if name.endswith(".json") and not name.startswith("."):
                    yield Path(root) / name


def iter_records(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[tuple[Path, list[str]]]]:
    """Valid records and ``(path, problems)`` for every file that is not one.

    Malformed files are reported, never silently dropped: a results table that
    quietly lost a seed would look complete.  A record whose ``record_id`` was
    already seen (a copied file) is reported too, since it would be counted
    twice.  Each valid record gets a ``_path`` key (where it was read from;
    not part of the schema).
    """
    records: list[dict[str, Any]] = []
    bad: list[tuple[Path, list[str]]] = []
    seen_files: set[Path] = set()
    seen_ids: dict[str, Path] = {}
    for path in _expand(paths):
        key = path.resolve()
        if key in seen_files:
            continue
        seen_files.add(key)
        obj, problems = read_record_file(path)
        if not problems:
            record_id = obj["record_id"]  # type: ignore[index]
            if record_id in seen_ids:
                problems = [
                    f"record_id: {record_id} is also the id of {seen_ids[record_id]} (a copied record)"
                ]
            else:
                seen_ids[record_id] = path
        if problems:
            bad.append((path, problems))
        else:
            records.append({**obj, "_path": str(path)})  # type: ignore[dict-item]
    return records, bad
