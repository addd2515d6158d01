"""Check result records against the JSON Schema, plus the few rules a schema cannot say.

The schema (``schema/record-v1.schema.json``, shipped as package data) is the
contract: other tools can validate records with any JSON Schema library.  This
module runs it with ``jsonschema`` and turns every error into one readable line
with a JSON path ("status.state: 'done' is not one of [...]"), so a malformed
record says everything wrong with it at once.  On top of the schema it checks
what relates two fields or needs Python: the config hash matches the config,
the duration matches start and end, and the object is strict JSON (no NaN, no
Python-only types) — ``json`` would otherwise write NaN that other readers reject.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

SUPPORTED_SCHEMA_VERSIONS = (1,)
SCHEMA_FILES = {1: "record-v1.schema.json"}
MAX_MESSAGE = 300  # jsonschema quotes the whole offending value; a full config would drown the line
DURATION_TOLERANCE_S = 1e-3


class RecordError(ValueError):
    """A result record file is unusable; the message names the file and lists every problem."""

    def __init__(self, path: Path | str, problems: list[str], summary: str | None = None) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{summary or f'invalid result record {self.path}'}:\n{listing}")


@functools.cache
def load_schema(version: int = 1) -> dict[str, Any]:
    """The JSON Schema of record ``version``, read from package data (works from a wheel or zip)."""
    text = (
        resources.files("harmony_bench.results").joinpath("schema", SCHEMA_FILES[version]).read_text("utf-8")
    )
    return json.loads(text)


@functools.cache
def _validator(version: int) -> Any:
    """A compiled Draft 2020-12 validator; jsonschema is imported here, not at package import."""
    from jsonschema import Draft202012Validator

    schema = load_schema(version)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts: Iterable[Any]) -> str:
    """``["status", "state"]`` → ``status.state``; list indices as ``[0]``; empty → ``(root)``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _strict_json_problems(obj: Any, path: tuple[Any, ...] = ()) -> list[str]:
    """Values a strict JSON reader would reject or that JSON cannot hold (NaN, inf, sets, objects)."""
    if isinstance(obj, dict):
        problems = [f"{json_path(path)}: key {k!r} is not a string" for k in obj if not isinstance(k, str)]
        for key, value in obj.items():
            problems += _strict_json_problems(value, (*path, key))
        return problems
    if isinstance(obj, list):
        return [p for i, value in enumerate(obj) for p in _strict_json_problems(value, (*path, i))]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [
            f"{json_path(path)}: {obj} is not valid JSON (use null for a value that could not be computed)"
        ]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return []
    return [f"{json_path(path)}: {type(obj).__name__} is not a JSON type"]


def _parse_utc(text: str) -> datetime:
    """Parse the record's timestamps; Python 3.10's fromisoformat does not take a 'Z' suffix."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _cross_field_problems(record: dict[str, Any]) -> list[str]:
    """Rules relating two fields, run only on a record the schema accepted."""
    from harmony_bench.results.canonical import config_hash

    problems = []
    task = record["task"]
    expected = config_hash(task["config"])
    if task["config_hash"] != expected:
        problems.append(
            f"task.config_hash: {task['config_hash']} does not match task.config (its hash is {expected}); "
            "the config was edited after the run"
        )
    timing = record["timing"]
    try:
        start, end = _parse_utc(timing["start"]), _parse_utc(timing["end"])
    except ValueError as exc:
        problems.append(f"timing: not a valid timestamp: {exc}")
    else:
        elapsed = (end - start).total_seconds()
        if abs(elapsed - timing["duration_s"]) > DURATION_TOLERANCE_S:
            problems.append(f"timing.duration_s: {timing['duration_s']} but end - start is {elapsed} s")
    return problems


def _version_problem(obj: dict[str, Any]) -> str | None:
    """Say which versions are supported when ``schema_version`` is missing or unknown."""
    supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
    if "schema_version" not in obj:
        return f"schema_version: missing; supported versions: {supported}"
    version = obj["schema_version"]
    if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        return (
            f"schema_version: {version!r} is not supported (supported versions: {supported}); "
            "the record was written by another harmony-bench version"
        )
    return None


def validate_record(obj: object) -> list[str]:
    """Every problem with ``obj`` as a result record, one line each with its JSON path; [] when valid.

    The version is checked first: a record of an unknown version is reported
    as such instead of with a list of schema errors that would only mislead.
    """
    if not isinstance(obj, dict):
        return [f"(root): expected a JSON object (a result record), got {_json_type(obj)}"]
    problem = _version_problem(obj)
    if problem:
        return [problem]
    problems = _strict_json_problems(obj)
    if problems:  # jsonschema would accept NaN or choke on odd types; report them plainly
        return problems
    errors = sorted(
        _validator(obj["schema_version"]).iter_errors(obj),
        key=lambda e: ([str(p) for p in e.absolute_path], e.message),
    )
    # dict.fromkeys: a value failing both branches of a leaf-or-group check is reported once
    problems = list(dict.fromkeys(_shorten(f"{json_path(e.absolute_path)}: {e.message}") for e in errors))
    return problems or _cross_field_problems(obj)


def _json_type(obj: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return "a number"
    return names.get(type(obj), type(obj).__name__)


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Object hook that refuses duplicate keys, which ``json`` would otherwise resolve silently."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def read_record_file(path: Path) -> tuple[object, list[str]]:
    """Parse ``path`` and validate it: ``(parsed or None, problems)``.

    Shared by ``validate_file`` and ``load_record`` so a file is read once.
    Each failure mode gets its own message (missing, not UTF-8, not JSON with
    line and column), because "invalid record" alone does not help anyone fix
    a file truncated by a full disk.
    """
    path = Path(path)
    if not path.exists():
        return None, ["file not found"]
    if path.is_dir():
        return None, ["is a directory, not a record file"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"cannot read: {exc.strerror or exc}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"]
    if not text.strip():
        return None, ["empty file (an interrupted write?)"]
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
    except ValueError as exc:
        return None, [f"not valid JSON: {exc}"]
    return obj, validate_record(obj)


def validate_file(path: Path) -> list[str]:
    """Every problem with the record file at ``path``; [] when it is a valid record."""
    return read_record_file(path)[1]
