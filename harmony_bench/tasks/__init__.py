"""Task protocols: YAML files in ``benchmarks/tasks/`` naming a lazily imported runner.

A protocol file holds the paper's hyper-parameters as data (``config``), named
presets that override them (``smoke`` for CPU tests, ``paper`` for the real
protocol), the metrics with ``higher_is_better``, and a ``protocol_version``
that is bumped whenever a change could move a number, so records made under
different protocol versions are never compared.  The runner is a
``"module:attr"`` string: heavy stacks (mmseg, mmdet) are imported only when
their task runs.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harmony_bench.paths import task_dirs
from harmony_bench.registry import Registry, UnknownNameError, import_object, suggest
from harmony_bench.yaml_io import DataFileError, check_keys, load_mapping

REQUIRED_KEYS = {"name", "description", "runner", "protocol_version", "dataset", "config", "metrics"}
# ``preset_docs`` ({preset: {summary, sources, deviations}}) and ``deviations`` (common to every preset)
# document what each preset reproduces and what differs from its source on purpose (HELPERS.md contract).
OPTIONAL_KEYS = {"presets", "default_preset", "sources", "notes", "preset_docs", "deviations"}

# Tasks the suite will support but whose protocols have not landed yet.  `run`
# answers these with "not available yet" instead of "unknown task".
PLANNED_TASKS: dict[str, str] = {}


class TaskNotAvailableError(LookupError):
    """The task is planned but not implemented in this version."""


@dataclass(frozen=True)
class TaskSpec:
    """One task protocol, as declared in ``benchmarks/tasks/<name>.yaml``."""

    name: str
    description: str
    runner: str
    protocol_version: str
    dataset: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_preset: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: str | None = None
    preset_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    path: str | None = None

    def resolve_config(self, preset: str | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The protocol config with a preset and then explicit overrides merged in (deep merge)."""
        preset = preset or self.default_preset
        config = copy.deepcopy(self.config)
        if preset is not None:
            if preset not in self.presets:
                raise UnknownNameError(suggest(preset, sorted(self.presets), f"preset of task {self.name!r}"))
            config = deep_merge(config, self.presets[preset])
        return deep_merge(config, overrides or {})

    def load_runner(self) -> Any:
        """Import the runner callable (this is where heavy stacks get imported)."""
        return import_object(self.runner)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for listings."""
        return asdict(self)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, merging nested mappings instead of replacing them."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def task_from_file(path: Path) -> TaskSpec:
    """Parse and check one protocol file."""
    data = load_mapping(path)
    check_keys(path, data, REQUIRED_KEYS, OPTIONAL_KEYS)
    if data["name"] != path.stem:
        raise DataFileError(f"{path}: task name {data['name']!r} must equal the file name {path.stem!r}")
    for metric in data["metrics"]:
        if not isinstance(metric, dict) or {"name", "higher_is_better"} - metric.keys():
            raise DataFileError(f"{path}: each metric needs 'name' and 'higher_is_better', got {metric!r}")
    return TaskSpec(**data, path=str(path))


def load_tasks(dirs: list[Path]) -> Registry[TaskSpec]:
    """Read every ``*.yaml`` protocol in ``dirs``; a name defined twice is an error."""
    registry: Registry[TaskSpec] = Registry("task")
    for directory in dirs:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            spec = task_from_file(path)
            if spec.name in registry:
                raise DataFileError(
                    f"task {spec.name!r} is defined twice: {registry.get(spec.name).path} and {path}"
                )
            registry.register(spec.name, spec)
    return registry


@functools.cache
def task_registry() -> Registry[TaskSpec]:
    """The protocols from ``$HARMONY_BENCH_TASKS`` and ``benchmarks/tasks/`` (read once per process)."""
    return load_tasks(task_dirs())


def get_task(name: str) -> TaskSpec:
    """Look a task up; planned tasks raise TaskNotAvailableError, unknown ones "did you mean"."""
    registry = task_registry()
    if name not in registry and name in PLANNED_TASKS:
        raise TaskNotAvailableError(
            f"Task {name!r} ({PLANNED_TASKS[name]}) is not available yet in this version of harmony-bench. "
            f"Available now: {', '.join(registry.names()) or '(none)'}. "
            "See `harmony-bench list tasks` for what is planned."
        )
    if name not in registry:
        raise UnknownNameError(suggest(name, sorted({*registry.names(), *PLANNED_TASKS}), "task"))
    return registry.get(name)
