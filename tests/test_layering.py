"""Imports in harmony_bench/ only point down: no cycle between modules, no import of a higher layer.

Every import counts: module-level, inside functions, and under ``if TYPE_CHECKING`` (a function-level
import that goes up is a hidden cycle, not a fix).  The graph is read with ``ast``; nothing is imported.

A *unit* is a top-level module (``runner``, ``atomic``) or a subpackage (``tasks``, ``suites``).  ``LAYERS``
orders the units bottom up; a unit may import units of lower layers only (and itself).  Inside a unit
the module graph must be acyclic, which orders its modules too (e.g. ``suites``: spec, state < worker <
jobs < plan < local, slurm < checks; ``leaderboard``: comparison < board < markdown < html_page < build).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harmony_bench"

# Bottom up.  A new module or subpackage must be placed here (test_every_unit_has_a_layer).
LAYERS: list[set[str]] = [
    # leaves: one home each for a shared mechanism, importing nothing of harmony_bench
    {
        "harmony_bench",
        "atomic",
        "threads",
        "runtime",
        "paths",
        "yaml_io",
        "registry",
        "provenance",
        "sources",
        "protocol_schema",
        "grid",
        "events",
    },  # fmt: skip
    {"store", "results", "cards", "protocols"},  # data files: records, backbone cards, task protocols
    {"data", "tables", "listing"},  # dataset readers, synthetic data; tables of records; listings
    {"models"},  # backbones: build, convert, load
    {"preflight"},  # bad input refused before work
    {"runner"},  # one run -> one record; the TaskRunner contract
    {"run_identity", "pretrain"},  # resume identities; pretraining (a producer of backbones)
    {"dense"},  # the OpenMMLab adapter shared by ADE20K and COCO
    {"tasks", "sheet", "suites"},  # task runners; the protocol sheet; suites of runs
    {"leaderboard"},  # reads records and suites
    {"cli"},
    {"__main__"},
]


def modules(package: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of ``package`` (a package is its ``__init__``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every import statement, wherever it stands)."""
    mods = modules(package)
    top = package.name

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(resolve(a.name) for a in node.names if a.name.split(".")[0] == top)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    full = ".".join(base + ([node.module] if node.module else []))
                else:
                    full = node.module or ""
                if full.split(".")[0] != top:
                    continue
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{full}.{alias.name}"
                    targets.add(sub if sub in mods else resolve(full))
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def unit(module: str) -> str:
    """``harmony_bench.suites.plan`` -> ``suites``; the package's own ``__init__`` -> ``harmony_bench``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(layers: list[set[str]]) -> dict[str, int]:
    return {name: i for i, names in enumerate(layers) for name in names}


def upward_imports(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """``a -> b`` for every import of a unit in the same or a higher layer (another unit)."""
    level = layer_of(layers)
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = unit(source), unit(target)
            if a != b and level.get(b, len(layers)) >= level.get(a, -1):
                bad.append(f"{source} -> {target} ({a}: layer {level.get(a)}, {b}: layer {level.get(b)})")
    return bad


# --------------------------------------------------------------------------- the package


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def test_every_unit_has_a_layer():
    units = {unit(m) for m in modules(PACKAGE)}
    declared = [name for names in LAYERS for name in names]
    assert len(declared) == len(set(declared)), "a unit is declared in two layers"
    assert sorted(units - set(declared)) == [], "place the new module in LAYERS"
    assert sorted(set(declared) - units) == [], "LAYERS names a unit that no longer exists"


def test_imports_only_point_down():
    assert upward_imports(import_graph(PACKAGE), LAYERS) == []


# --------------------------------------------------------------------------- the checker itself


@pytest.fixture
def toy_package(tmp_path):
    """A package ``harmony_bench`` with a cycle hidden in a function and an upward import."""

    def write(rel: str, text: str) -> None:
        path = tmp_path / "harmony_bench" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    write("__init__.py", "")
    write("low.py", "def f():\n    from harmony_bench.high import g  # upward, and a cycle\n")
    write("high.py", "from harmony_bench import low\n\ndef g():\n    pass\n")
    write("sub/__init__.py", "")
    write("sub/a.py", "from . import b\n")
    write("sub/b.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    write("sub/c.py", "from harmony_bench.low import f\n")
    return tmp_path / "harmony_bench"


def test_checker_finds_function_level_and_type_checking_cycles(toy_package):
    graph = import_graph(toy_package)
    assert graph["harmony_bench.sub.a"] == {"harmony_bench.sub.b"}
    assert graph["harmony_bench.high"] == {"harmony_bench.low"}
    assert cycles(graph) == [
        ["harmony_bench.high", "harmony_bench.low"],
        ["harmony_bench.sub.a", "harmony_bench.sub.b"],
    ]


def test_checker_finds_upward_imports(toy_package):
    graph = import_graph(toy_package)
    layers = [{"harmony_bench"}, {"low"}, {"sub"}, {"high"}]
    assert upward_imports(graph, layers) == [
        "harmony_bench.low -> harmony_bench.high (low: layer 1, high: layer 3)"
    ]
    same_layer = [{"harmony_bench"}, {"low", "high"}, {"sub"}]
    assert len(upward_imports(graph, same_layer)) == 2  # within a layer, units do not import each other
    assert upward_imports(graph, [{"harmony_bench"}, {"high"}, {"low"}, {"sub"}]) == [
        "harmony_bench.high -> harmony_bench.low (high: layer 1, low: layer 2)"
    ]
