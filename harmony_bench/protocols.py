"""Task protocols: YAML files in ``benchmarks/<area>/<task>.yaml`` naming a lazily imported runner.

A protocol file holds the paper's hyper-parameters as data (``config``), named
presets that override them (``smoke`` for CPU tests, ``paper`` for the real
protocol), the metrics with ``higher_is_better``, and a ``protocol_version``
that is bumped whenever a change could move a number, so records made under
different protocol versions are never compared.  The runner is a
``"module:attr"`` string: heavy stacks (mmseg, mmdet) are imported only when
their task runs.
"""

from __future__ import annotations

import ast
import copy
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harmony_bench.paths import task_dirs
from harmony_bench.protocol_schema import (
    check_config,
    deep_merge_plain,
    merge_overrides,
    parse_constraints,
    preset_key_errors,
)
from harmony_bench.registry import Registry, UnknownNameError, import_object, suggest
from harmony_bench.yaml_io import DataFileError, check_keys, load_mapping

REQUIRED_KEYS = {"name", "description", "runner", "protocol_version", "dataset", "config", "metrics"}
OPTIONAL_KEYS = {
    "presets",
    "default_preset",
    "family_presets",
    "sources",
    "preset_docs",
    "deviations",
    "notes",
    "constraints",
}
PRESET_DOC_KEYS = {"summary", "sources", "deviations"}


@dataclass(frozen=True)
class TaskSpec:
    """One task protocol, as declared in ``benchmarks/<area>/<name>.yaml``."""

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
    preset_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    notes: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    # backbone family -> {preset asked for: preset run}: a family whose architecture needs its own recipe
    # (Swin's layer decay is over stages, not ViT blocks) runs that recipe under the common name (``smoke``)
    family_presets: dict[str, dict[str, str]] = field(default_factory=dict)
    path: str | None = None

    def preset_for(self, preset: str | None, family: str | None) -> str | None:
        """The preset that runs when ``preset`` (None: the default) is asked for on a backbone of ``family``.

        ``family_presets`` in the protocol file maps a family's request to its own preset (``smoke`` ->
        ``smoke-swin``); the record names the preset that ran.  Other requests are returned unchanged.
        """
        asked = preset or self.default_preset
        if asked is None:
            return None
        return (self.family_presets.get(family or "") or {}).get(asked, asked)

    def resolve_config(
        self, preset: str | None, overrides: dict[str, Any] | None = None, what: str = "the overrides"
    ) -> dict[str, Any]:
        """The protocol config with a preset and then explicit overrides merged in, checked.

        The protocol file is the schema (``harmony_bench.protocol_schema``): an override must name a key of
        ``config`` (or add one with ``+``) and every value must fit its default's type and the protocol's
        ``constraints``.  ``what`` names the overrides in errors (``--set``, a suite's ``set:``).

        Raises:
            ProtocolKeyError: an unknown key (the message names the closest real one).
            ProtocolValueError: a value of the wrong type or outside its range or choices.
        """
        preset = preset or self.default_preset
        config = copy.deepcopy(self.config)
        if preset is not None:
            if preset not in self.presets:
                raise UnknownNameError(suggest(preset, sorted(self.presets), f"preset of task {self.name!r}"))
            config = merge_overrides(config, self.presets[preset], f"preset {preset!r}", self.config)
        config = merge_overrides(config, overrides or {}, f"{what} of task {self.name!r}", self.config)
        return check_config(self.config, config, self.parsed_constraints(), self.name)

    def parsed_constraints(self) -> dict[str, Any]:
        """The ``constraints:`` section as ``Constraint`` objects (checked when the file was read)."""
        return parse_constraints(self.config, self.constraints, self.path or self.name)

    def preset_doc(self, preset: str | None) -> dict[str, Any]:
        """The ``preset_docs`` entry of ``preset`` (default preset when None); empty when undocumented."""
        return dict(self.preset_docs.get(preset or self.default_preset or "") or {})

    def deviations_for(self, preset: str | None) -> list[str]:
        """What ``preset`` does differently from its source on purpose: the task's, then the preset's."""
        return [*self.deviations, *(self.preset_doc(preset).get("deviations") or [])]

    def sources_for(self, preset: str | None) -> list[dict[str, str]]:
        """Citation tables, most specific first: the preset's ``preset_docs`` sources, then the task's."""
        return [dict(self.preset_doc(preset).get("sources") or {}), dict(self.sources)]

    def load_runner(self) -> Any:
        """Import the runner object (heavy stacks get imported here); see ``runner.load_task_runner``."""
        return import_object(self.runner)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for listings."""
        return asdict(self)


# Nested mappings merged, no key checks: the CLI builds its override mappings with this before they are
# checked against the protocol (one merge rule, in protocol_schema).
deep_merge = deep_merge_plain


def task_from_file(path: Path) -> TaskSpec:
    """Parse and check one protocol file."""
    data = load_mapping(path)
    check_keys(path, data, REQUIRED_KEYS, OPTIONAL_KEYS)
    if data["name"] != path.stem:
        raise DataFileError(f"{path}: task name {data['name']!r} must equal the file name {path.stem!r}")
    for metric in data["metrics"]:
        if not isinstance(metric, dict) or {"name", "higher_is_better"} - metric.keys():
            raise DataFileError(f"{path}: each metric needs 'name' and 'higher_is_better', got {metric!r}")
    _check_docs(path, data)
    spec = TaskSpec(**data, path=str(path))
    check_schema(spec)
    return spec


def check_schema(spec: TaskSpec) -> None:
    """The protocol file as a schema: constraints name real keys; each preset sets real keys to valid values.

    Raises:
        DataFileError: naming the file, the preset and the key (every key a preset sets must exist in
            ``config``; a value a preset sets must fit the key's type and constraints).
    """
    path = spec.path or spec.name
    check_runner_link(spec.runner, path)
    if not isinstance(spec.config, dict) or not isinstance(spec.presets or {}, dict):
        raise DataFileError(f"{path}: config and presets must be mappings")
    try:
        spec.parsed_constraints()
    except ValueError as exc:
        raise DataFileError(str(exc)) from exc
    for name, preset in (spec.presets or {}).items():
        if not isinstance(preset, dict):
            raise DataFileError(
                f"{path}: preset {name!r} must be a mapping of config overrides, got {preset!r}"
            )
        added = [k for k in _keys(preset) if k.startswith("+")]
        if added:
            raise DataFileError(
                f"{path}: preset {name!r} adds {added[0]!r}: a preset may only set keys of config (add the "
                "key to config with its default instead)"
            )
        problems = preset_key_errors(spec.config, preset, name)
        if problems:
            raise DataFileError(
                f"{path}: {problems[0]} (every key a preset sets must exist in config: add it there with its "
                "default, or fix the preset)"
            )
        try:
            spec.resolve_config(name)
        except ValueError as exc:
            raise DataFileError(
                f"{path}: preset {name!r}: {exc} (fix the preset, or declare what the key allows under "
                "constraints:)"
            ) from exc
    if spec.default_preset is not None and spec.default_preset not in (spec.presets or {}):
        raise DataFileError(f"{path}: default_preset {spec.default_preset!r} is not one of the presets")
    for family, table in (spec.family_presets or {}).items():
        if not isinstance(table, dict):
            raise DataFileError(f"{path}: family_presets.{family} must map a preset name to a preset")
        for asked, ran in table.items():
            if asked not in (spec.presets or {}) or ran not in (spec.presets or {}):
                raise DataFileError(
                    f"{path}: family_presets.{family} maps {asked!r} to {ran!r}; both must be presets"
                )


def check_runner_link(runner: str, path: str) -> None:
    """``runner:`` is ``"module:attr"``; for harmony-bench's own tasks ``attr`` is a ``TaskRunner(...)``.

    Read from the module's source with ``ast``, so loading protocols never imports a task's heavy stack
    (mmseg, mmdet).  Runners outside the package (``$HARMONY_BENCH_TASKS`` tasks) are type-checked when
    they are imported (:func:`harmony_bench.runner.load_task_runner`).

    Raises:
        DataFileError: a malformed string, or a package module without that ``TaskRunner``.
    """
    module, sep, attr = str(runner).partition(":")
    if not sep or not module or not attr.isidentifier():
        raise DataFileError(f"{path}: runner {runner!r} must look like 'package.module:ATTR'")
    if module.split(".")[0] != "harmony_bench":
        return
    if attr not in _task_runners(module):
        raise DataFileError(
            f"{path}: runner {runner!r}: {module} assigns no {attr} = TaskRunner(...) at top level "
            "(every task module ends with RUNNER = TaskRunner(run=run, preflight=preflight))"
        )


@functools.cache
def _task_runners(module: str) -> frozenset[str]:
    """Top-level names ``module`` (a harmony_bench module, read as source) binds to ``TaskRunner(...)``."""
    base = Path(__file__).resolve().parent.joinpath(*module.split(".")[1:])
    source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    if not source.is_file():
        return frozenset()
    names = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        call = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        func = call.func if isinstance(call, ast.Call) else None
        if isinstance(func, ast.Name) and func.id == "TaskRunner":
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _keys(mapping: dict[str, Any], free: tuple[str, ...] = ("cfg_options",)) -> list[str]:
    """Every key of a nested mapping (not below ``cfg_options``, whose keys are mmengine's)."""
    out = []
    for key, value in mapping.items():
        out.append(str(key))
        if isinstance(value, dict) and str(key).lstrip("+") not in free:
            out += _keys(value, free)
    return out


def _check_docs(path: Path, data: dict[str, Any]) -> None:
    """``sources``, ``deviations`` and ``preset_docs`` have the shapes the protocol sheet reads."""
    sources = data.get("sources") or {}
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise DataFileError(f"{path}: 'sources' must map dotted config paths to citation strings")
    deviations = data.get("deviations") or []
    if not isinstance(deviations, list) or not all(isinstance(d, str) for d in deviations):
        raise DataFileError(f"{path}: 'deviations' must be a list of strings")
    presets = data.get("presets") or {}
    for preset, doc in (data.get("preset_docs") or {}).items():
        if preset not in presets:
            raise DataFileError(
                f"{path}: preset_docs names preset {preset!r}, which is not in presets {sorted(presets)}"
            )
        if not isinstance(doc, dict) or set(doc) - PRESET_DOC_KEYS:
            raise DataFileError(
                f"{path}: preset_docs.{preset} may only hold {sorted(PRESET_DOC_KEYS)}, got {doc!r}"
            )
        if not isinstance(doc.get("sources") or {}, dict) or not isinstance(
            doc.get("deviations") or [], list
        ):
            raise DataFileError(
                f"{path}: preset_docs.{preset}: 'sources' is a mapping and 'deviations' a list of strings"
            )


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
    """The protocols in ``$HARMONY_BENCH_TASKS`` and ``benchmarks/<group>/`` (see paths.TASK_GROUPS)."""
    return load_tasks(task_dirs())


def get_task(name: str) -> TaskSpec:
    """Look a task up; an unknown name raises UnknownNameError with "did you mean"."""
    registry = task_registry()
    if name not in registry:
        raise UnknownNameError(suggest(name, sorted(registry.names()), "task"))
    return registry.get(name)
