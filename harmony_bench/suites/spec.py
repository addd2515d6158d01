"""Suite files: a backbone × task matrix as data (``benchmarks/suites/<name>.yaml``).

A suite says which backbones run which tasks under which preset and seeds,
where the data comes from (``data synth`` for synthetic suites, a path or an
environment variable for real ones), which steps must run first (e.g.
``harmony-bench pretrain`` producing a backbone's checkpoint and card), and
per cell the published value it should reproduce and the tolerance.  Adding a
task, a backbone or a pretraining step to a suite is an edit to this data,
not to code.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_bench.paths import REPO_ROOT
from harmony_bench.registry import UnknownNameError, suggest
from harmony_bench.yaml_io import DataFileError, check_keys, load_mapping

SUITE_DIR = REPO_ROOT / "benchmarks" / "suites"
REQUIRED = {"name", "description", "backbones", "tasks"}
OPTIONAL = {"synthetic", "output", "preset", "seeds", "data", "steps", "exclude", "only", "expect", "notes"}
EXPECT_KEYS = {"backbone", "task", "metric", "tolerance"}
EXPECT_OPTIONAL = {"reported", "value", "source", "sigma", "preset"}


@dataclass(frozen=True)
class Step:
    """A prerequisite command (``harmony-bench <args>``) run once before the cells that need it.

    ``args`` may use ``{out}`` (the step's own directory) and ``{data.KEY}``;
    ``produces`` names the files the step must leave behind (relative to
    ``{out}``), which is also how a rerun knows the step is already done.
    """

    name: str
    args: list[str]
    produces: dict[str, str]
    est_s: float = 60.0


@dataclass(frozen=True)
class BackboneEntry:
    """One row of the suite: a card (name, or ``{steps.S.card}``) and optionally a checkpoint."""

    key: str
    card: str
    checkpoint: str | None = None
    after: str | None = None  # a step that must run first
    label: str | None = None


@dataclass(frozen=True)
class TaskEntry:
    """One column: a task, the data key it reads, preset/overrides and an estimated time (for the ETA)."""

    name: str
    data: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    est_s: float = 30.0


@dataclass(frozen=True)
class Expectation:
    """The published value a cell should reproduce, within ``tolerance`` (+ ``sigma`` × seed std).

    ``preset`` is needed only when the suite runs the task under several
    presets for that backbone: a smoke number must never be checked against a
    paper value.
    """

    backbone: str
    task: str
    metric: str
    value: float
    tolerance: float
    source: str
    sigma: float = 0.0
    preset: str | None = None
    reported: str | None = None  # the published row's id (results/reported/), when the value is one


@dataclass(frozen=True)
class Cell:
    """One backbone × task × seed run of the suite."""

    backbone: BackboneEntry
    task: TaskEntry
    seed: int

    @property
    def id(self) -> str:
        """Stable identifier: the key in the state file and the name of the cell's log."""
        return f"{self.backbone.key}__{self.task.name}__{self.task.preset or 'default'}__seed{self.seed}"


@dataclass
class Suite:
    """A parsed suite file."""

    name: str
    description: str
    synthetic: bool
    output: Path
    seeds: list[int]
    data: dict[str, dict[str, Any]]
    steps: dict[str, Step]
    backbones: list[BackboneEntry]
    tasks: list[TaskEntry]
    cells: list[Cell]
    expect: list[Expectation]
    path: Path | None = None

    @property
    def records(self) -> Path:
        """Where the records go: ``output`` for real data, ``output/records`` for a synthetic suite.

        A synthetic suite's output also holds the generated data, which a record scan must not read.
        """
        return self.output / "records" if self.synthetic else self.output

    def cell(self, cell_id: str) -> Cell:
        """Look a cell up by id (what a Slurm job receives)."""
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise UnknownNameError(suggest(cell_id, [c.id for c in self.cells], f"cell of suite {self.name!r}"))


def suite_files() -> dict[str, Path]:
    """Suites by name: ``$HARMONY_BENCH_SUITES`` directories first, then ``benchmarks/suites/``."""
    dirs = [Path(p) for p in os.environ.get("HARMONY_BENCH_SUITES", "").split(os.pathsep) if p]
    found: dict[str, Path] = {}
    for directory in [*dirs, SUITE_DIR]:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            found.setdefault(path.stem, path)
    return found


def load_suite(name_or_path: str | Path, output: Path | None = None) -> Suite:
    """Parse a suite by name (``demo``) or path; ``output`` overrides where its records go."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        files = suite_files()
        if str(name_or_path) not in files:
            raise UnknownNameError(suggest(str(name_or_path), sorted(files), "suite"))
        path = files[str(name_or_path)]
    return parse_suite(load_mapping(path), path, output)


def _task_entry(path: Path, item: Any, preset: str | None) -> TaskEntry:
    from harmony_bench.protocols import get_task

    item = {"name": item} if isinstance(item, str) else dict(item)
    check_keys(path, item, {"name"}, {"data", "preset", "set", "est_s"})
    spec = get_task(item["name"])
    data = item.get("data") or spec.dataset.get("synth_kind") or spec.dataset.get("name")
    try:  # the protocol is the schema: a `set:` key must exist and its value must fit
        spec.resolve_config(item.get("preset", preset), dict(item.get("set") or {}), "set:")
    except ValueError as exc:
        raise DataFileError(f"{path}: task {spec.name!r}: {exc}") from exc
    return TaskEntry(
        name=spec.name,
        data=str(data),
        preset=item.get("preset", preset),
        overrides=dict(item.get("set") or {}),
        est_s=float(item.get("est_s", 30.0)),
    )


def _backbone_entry(path: Path, key: str, item: Any, steps: dict[str, Step]) -> BackboneEntry:
    item = {"card": key} if item is None else ({"card": item} if isinstance(item, str) else dict(item))
    check_keys(path, item, {"card"}, {"checkpoint", "after", "label"})
    after = item.get("after")
    if after is not None and after not in steps:
        raise DataFileError(f"{path}: backbone {key!r} runs after unknown step {after!r} ({sorted(steps)})")
    return BackboneEntry(key, str(item["card"]), item.get("checkpoint"), after, item.get("label"))


def _steps(path: Path, raw: dict[str, Any]) -> dict[str, Step]:
    steps = {}
    for name, item in (raw or {}).items():
        check_keys(path, item, {"args", "produces"}, {"est_s"})
        steps[name] = Step(
            name, [str(a) for a in item["args"]], dict(item["produces"]), item.get("est_s", 60)
        )
    return steps


def _matches(rule: dict[str, Any], backbone: str, task: TaskEntry) -> bool:
    """An exclude/only rule: any of backbone, task, preset; a key it leaves out matches everything."""
    return (
        rule.get("backbone", backbone) == backbone
        and rule.get("task", task.name) == task.name
        and rule.get("preset", task.preset) == task.preset
    )


def _expectation(path: Path, item: dict[str, Any]) -> Expectation:
    from harmony_bench.suites.reported import reported_value

    check_keys(path, item, EXPECT_KEYS, EXPECT_OPTIONAL)
    if ("reported" in item) == ("value" in item):
        raise DataFileError(
            f"{path}: an expectation needs exactly one of 'reported' (an id) or 'value': {item}"
        )
    if "reported" in item:
        try:
            value, source = reported_value(item["reported"], item["task"], item["metric"])
        except ValueError as exc:
            raise DataFileError(f"{path}: {exc}") from exc
    else:
        value, source = float(item["value"]), item.get("source")
        if not source:
            raise DataFileError(f"{path}: an inline expected value needs a 'source': {item}")
    return Expectation(
        item["backbone"], item["task"], item["metric"], value, float(item["tolerance"]), source,
        float(item.get("sigma", 0.0)), item.get("preset"), item.get("reported"),
    )  # fmt: skip


def _check_expectation(path: Path, e: Expectation, cells: list[Cell]) -> None:
    """An expectation must name cells of the suite, and one preset of them."""
    presets = {c.task.preset for c in cells if c.backbone.key == e.backbone and c.task.name == e.task}
    if not presets:
        raise DataFileError(f"{path}: expectation for {e.backbone} × {e.task} names no cell of the suite")
    if e.preset is not None and e.preset not in presets:
        raise DataFileError(
            f"{path}: expectation for {e.backbone} × {e.task}: no cell has preset {e.preset!r}"
        )
    if e.preset is None and len(presets) > 1:
        raise DataFileError(
            f"{path}: expectation for {e.backbone} × {e.task} needs a 'preset' (the suite runs "
            f"{sorted(map(str, presets))})"
        )


def parse_suite(data: dict[str, Any], path: Path, output: Path | None = None) -> Suite:
    """Check a suite's data and expand it into cells (backbones × tasks × seeds, minus exclusions)."""
    check_keys(path, data, REQUIRED, OPTIONAL)
    preset = data.get("preset")
    steps = _steps(path, data.get("steps") or {})
    backbones = [_backbone_entry(path, k, v, steps) for k, v in data["backbones"].items()]
    tasks = [_task_entry(path, t, preset) for t in data["tasks"]]
    seeds = [int(s) for s in data.get("seeds", [0])]
    exclude, only = data.get("exclude") or [], data.get("only")
    cells = [
        Cell(b, t, s)
        for b, t, s in itertools.product(backbones, tasks, seeds)
        if not any(_matches(rule, b.key, t) for rule in exclude)
        and (only is None or any(_matches(rule, b.key, t) for rule in only))
    ]
    expect = [_expectation(path, item) for item in data.get("expect") or []]
    for e in expect:
        _check_expectation(path, e, cells)
    synthetic = bool(data.get("synthetic", False))
    # Synthetic records never land next to real ones: their own tree, ignored by git.
    default = f"results/synthetic/{data['name']}" if synthetic else "results/records"
    # --output is the user's path: relative to the current directory, as `run --output` is; a path in
    # the suite file (or the default) is relative to the checkout, where the suite files live.
    out = Path(output).expanduser().absolute() if output else Path(data.get("output") or default)
    return Suite(
        name=data["name"],
        description=data["description"],
        synthetic=synthetic,
        output=out if out.is_absolute() else REPO_ROOT / out,
        seeds=seeds,
        data={k: dict(v) for k, v in (data.get("data") or {}).items()},
        steps=steps,
        backbones=backbones,
        tasks=tasks,
        cells=cells,
        expect=expect,
        path=path,
    )
