"""Canonical JSON: plain data from Python values, one string per value, and its hash.

The one home of "equal configs hash equal whatever the key order": the record's ``config_hash`` (checked by
:mod:`.validate`), run identities that guard a resume (:mod:`harmony_bench.run_identity`), feature-cache
keys and suite cell ids all hash through :func:`config_hash`.  A leaf module: it imports nothing of
harmony-bench, so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any


def to_jsonable(obj: Any, where: str = "value") -> Any:
    """Plain JSON data from what task runners and YAML produce, or a TypeError naming the field.

    The record is built after a run that may have taken hours; a config value
    that happens to be a ``Path``, a tuple, a NumPy scalar or a YAML date must
    not cost the record, so those are converted the obvious way.  Non-finite
    floats become None (JSON has no NaN).  Anything else is refused.
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value, where)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {_json_key(k, where): to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v, f"{where}[]") for v in sorted(obj, key=repr)]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), where)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist(), where)
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored in a result record (not JSON data)")


def _json_key(key: Any, where: str) -> str:
    """Mapping keys as JSON object keys; YAML gives int keys for e.g. class-id maps."""
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"{where}: key {key!r} ({type(key).__name__}) cannot be a JSON object key")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text unescaped: one string per value, for hashing."""
    return json.dumps(to_jsonable(obj, "config"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(config: object) -> str:
    """sha256 (hex) of the canonical JSON of ``config``: equal configs hash equal whatever the key order."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()
