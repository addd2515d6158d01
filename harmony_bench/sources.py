"""Citations of protocol values: the upstream file and line (or README command) each value comes from.

A task protocol's ``sources`` maps DOTTED CONFIG PATHS to citations.  An entry covers its path and
everything below it unless a longer path has its own entry (longest prefix wins), and a preset's
``preset_docs.<preset>.sources`` are searched before the task's, so a preset that runs another
source's experiment cites that source.  The mmengine protocol files of the dense tasks carry the same
kind of mapping in a ``sources`` variable, keyed by dotted mmengine paths (``optim_wrapper.optimizer.lr``,
``param_scheduler.0``); see ``harmony_bench.dense.protocol``.

Keys may contain dots themselves where a config holds a mapping of dotted keys (``cfg_options``), so
paths are matched segment-wise against the keys actually present, not split blindly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MISSING = object()


def covers(key: str, path: str) -> bool:
    """Whether the source entry ``key`` covers ``path`` (the same path or a path below it)."""
    return path == key or path.startswith(key + ".")


def find_source(path: str, tables: Sequence[Mapping[str, str]]) -> tuple[str, str] | None:
    """``(key, citation)`` of the longest key covering ``path`` in the first table that has one."""
    for table in tables:
        best = max((key for key in table if covers(key, path)), key=len, default=None)
        if best is not None:
            return best, table[best]
    return None


def flatten(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf; an empty mapping and every list are leaves."""
    if isinstance(config, Mapping) and config:
        for key, value in config.items():
            yield from flatten(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1], config


def lookup(config: Any, path: str, free: bool = False) -> Any:
    """The value at dotted ``path`` (list items by index), or ``MISSING``.

    Args:
        config: Nested mappings and lists.
        path: Dotted path; a key holding dots (``cfg_options: {"a.b": 1}``) is matched as one segment.
        free: Accept a path that continues below a ``None`` or empty-mapping leaf (a free-form slot such
            as ``cfg_options: {}`` or ``heads: null``) and return that leaf.
    """
    if not path:
        return config
    parts = path.split(".")
    if isinstance(config, Mapping):
        if free and not config:
            return config
        for n in range(len(parts), 0, -1):  # the longest key that matches the next segments
            key = ".".join(parts[:n])
            if key in config:
                found = lookup(config[key], ".".join(parts[n:]), free)
                if found is not MISSING:
                    return found
        return MISSING
    if isinstance(config, (list, tuple)):
        head, _, rest = path.partition(".")
        if head.isdigit() and int(head) < len(config):
            return lookup(config[int(head)], rest, free)
        return MISSING
    if free and config is None:
        return config
    return MISSING


def protocol_problems(spec: Any) -> list[str]:
    """What is wrong with a task protocol's ``presets``, ``sources`` and ``preset_docs``, one line each.

    Every key a preset sets must exist in ``config`` (the protocol file is the schema; a free-form slot
    such as ``cfg_options: {}`` takes any key below it); every source key must name a path of ``config``
    or of a preset's resolved config; every resolved value must have a source.
    """
    where = spec.path or spec.name
    problems = []
    for preset, overrides in spec.presets.items():
        for path, _ in flatten(overrides or {}):
            if lookup(spec.config, path, free=True) is MISSING:
                problems.append(f"{where}: presets.{preset} sets {path!r}, which is not a key of config")
    resolved = {preset: spec.resolve_config(preset) for preset in spec.presets}
    configs = [spec.config, *resolved.values()]
    for key in spec.sources:
        if all(lookup(config, key, free=True) is MISSING for config in configs):
            problems.append(f"{where}: sources key {key!r} names no path of config or of a preset")
    for preset, doc in spec.preset_docs.items():
        for key in (doc or {}).get("sources") or {}:
            if lookup(resolved.get(preset, spec.config), key, free=True) is MISSING:
                problems.append(f"{where}: preset_docs.{preset}.sources key {key!r} names no config path")
    for preset, config in resolved.items():
        tables = spec.sources_for(preset)
        for path, _ in flatten(config):
            if find_source(path, tables) is None:
                problems.append(f"{where}: preset {preset}: {path!r} has no source")
    return problems


def plain(value: Any) -> Any:
    """Mappings as dicts and tuples as lists, recursively (mmengine ConfigDicts, YAML, tuples of sizes)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def render_value(value: Any) -> str:
    """One line for a table cell: strings as they are, everything else as compact JSON."""
    import json

    value = plain(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
