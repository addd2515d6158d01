"""``benchmarks/PROTOCOLS.md``: every resolved protocol value next to its source, generated, checked in CI.

One page a reviewer diffs a paper against: for every task x preset (x size, detector and schedule for
the mmengine tasks) the resolved hyper-parameters, each with the citation that the protocol files give
for it (``harmony_bench.sources``: the task YAML's ``sources`` / ``preset_docs``, the mmengine files'
``sources`` variable), and the deviations of that protocol; then the pretraining recipes per method
(``benchmarks/pretrain/defaults.yaml`` and ``methods.yaml``, with their ``sources`` / ``deviations``
when present).  A protocol change shows up in review as a diff of this file; ``--check`` fails when
the committed file differs from what the code resolves.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_bench.paths import REPO_ROOT, TASK_GROUPS
from harmony_bench.sources import find_source, flatten, render_value

SHEET_PATH = REPO_ROOT / "benchmarks" / "PROTOCOLS.md"
UNCITED = "—"
Row = tuple[str, Any, str]


@dataclass
class Block:
    """One resolved protocol: a task's preset, for one size / detector / schedule where those exist."""

    title: str
    summary: str | None = None
    deviations: list[str] = field(default_factory=list)
    settings: list[Row] = field(default_factory=list)
    mm_file: str | None = None
    mm_card: str | None = None
    mm_rows: list[Row] = field(default_factory=list)


def _relative(path: str | Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _settings(spec: Any, config: dict[str, Any], preset: str, skip: tuple[str, ...] = ()) -> list[Row]:
    tables = spec.sources_for(preset)
    rows = []
    for path, value in flatten(config):
        if path.split(".")[0] in skip:
            continue
        found = find_source(path, tables)
        rows.append((path, value, found[1] if found else UNCITED))
    return rows


@contextlib.contextmanager
def _single_process() -> Iterator[None]:
    """Resolve as one process would (the per-process batch split reads ``WORLD_SIZE``)."""
    saved = os.environ.pop("WORLD_SIZE", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["WORLD_SIZE"] = saved


def task_blocks(spec: Any) -> list[Block]:
    """Every protocol a task defines, resolved (mmengine tasks: one block per size/detector/schedule)."""
    from harmony_bench.cards import get_card
    from harmony_bench.runner import RunOptions, TaskContext

    module = importlib.import_module(spec.runner.partition(":")[0])
    variants = getattr(module, "sheet_variants", None)
    blocks = []
    for preset in spec.presets:
        doc = spec.preset_doc(preset)
        common = dict(summary=doc.get("summary"), deviations=list(doc.get("deviations") or []))
        label = preset + (" (default)" if preset == spec.default_preset else "")
        if variants is None:
            config = spec.resolve_config(preset)
            blocks.append(Block(title=label, settings=_settings(spec, config, preset), **common))
            continue
        for name, overrides, card in variants(spec, preset):
            config = spec.resolve_config(preset, overrides)
            options = RunOptions(preset=preset, overrides=overrides)
            context = TaskContext(
                card=get_card(card), task=spec, config=config, options=options, work_dir=Path("<work_dir>")
            )
            with _single_process(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # mmengine's pkg_resources and mmdet's import-time notices
                mm_rows = sorted(module.protocol_rows(context), key=lambda row: row[0])
            blocks.append(
                Block(
                    title=f"{label} · {name}",
                    settings=_settings(spec, config, preset, skip=("cfg_options",)),
                    mm_file=_relative(module.protocol_file(context)),
                    mm_card=card,
                    mm_rows=mm_rows,
                    **common,
                )
            )
    return blocks


def pretrain_blocks(config_dir: Path | None = None) -> tuple[list[Block], list[str]]:
    """The pretraining recipe of every method in ``methods.yaml``, and the deviations common to all.

    Each method is resolved by ``pretrain.config.protocol_docs`` (the loader's own reading of the files'
    ``sources`` / ``deviations`` / ``fixes``), so the sheet shows exactly what ``pretrain`` runs.  Settings
    of objectives the method does not use, and the text tower of image-only methods, are left out.
    """
    from harmony_bench.pretrain.config import CONFIG_DIR, TEXT_OBJECTIVES, protocol_docs, split_docs
    from harmony_bench.yaml_io import load_mapping

    config_dir = config_dir or CONFIG_DIR
    _, d_docs = split_docs(load_mapping(config_dir / "defaults.yaml"))
    common = [str(d) for d in d_docs.get("deviations") or []]
    fixes = d_docs.get("fixes") or {}
    methods, _ = split_docs(load_mapping(config_dir / "methods.yaml"))
    blocks = []
    for name, spec in methods.items():
        docs = protocol_docs(name, config_dir=config_dir)
        cfg = docs["config"]
        used = set(cfg["objective_names"])
        tables = [docs["sources"]]
        rows = []
        skip = {"deviations", "preset", "method"}
        for path, value in flatten({k: v for k, v in cfg.items() if k not in skip}):
            parts = path.split(".")
            if parts[0] == "objectives" and len(parts) > 1 and parts[1] not in used:
                continue
            if parts[:2] == ["model", "text"] and not used & TEXT_OBJECTIVES:
                continue
            found = find_source(path, tables)
            rows.append((path, value, found[1] if found else UNCITED))
        own = [d for d in docs["deviations"] if d not in common]
        opt_in = [f"opt-in fix `--set {key}`: {text}" for key, text in fixes.items() if _applies(key, cfg)]
        blocks.append(
            Block(title=name, summary=(spec or {}).get("summary"), deviations=own + opt_in, settings=rows)
        )
    return blocks, common


def _applies(fix: str, cfg: dict[str, Any]) -> bool:
    """Whether the opt-in fix ``"path=value"`` names a setting this method has (objective in use)."""
    from harmony_bench.pretrain.config import lookup

    path = fix.partition("=")[0]
    parts = path.split(".")
    if parts[0] == "objectives" and len(parts) > 1 and parts[1] not in cfg["objective_names"]:
        return False
    try:
        lookup(cfg, path)
    except KeyError:
        return False
    return True


def _cell(text: Any) -> str:
    return render_value(text).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| key | value | source |", "|---|---|---|"]
    lines += [f"| `{_cell(path)}` | {_cell(value)} | {_cell(source)} |" for path, value, source in rows]
    return lines


def _render_block(task: str, block: Block) -> list[str]:
    lines = ["", f"### {task} · {block.title}", ""]
    if block.summary:
        lines += [block.summary.strip(), ""]
    if block.deviations:
        lines += [
            f"Deviations of this {'method' if task == 'pretrain' else 'preset'} (and the ones above):",
            "",
        ]
        lines += [f"- {' '.join(d.split())}" for d in block.deviations] + [""]
    if block.mm_file is not None:
        lines += ["Task settings:", ""]
    lines += _table(block.settings)
    if block.mm_file is not None:
        lines += [
            "",
            f"mmengine config `{block.mm_file}`, resolved for `{block.mm_card}` (cited values):",
            "",
            *_table(block.mm_rows),
        ]
    return lines


def _deviations(items: list[str], scope: str) -> list[str]:
    if not items:
        return []
    return ["", f"Deviations from the source ({scope}):", "", *(f"- {' '.join(d.split())}" for d in items)]


def generate() -> str:
    """The sheet's Markdown text, from the shipped protocol files (not ``$HARMONY_BENCH_TASKS``)."""
    from harmony_bench.protocols import load_tasks

    registry = load_tasks([REPO_ROOT / "benchmarks" / group for group in TASK_GROUPS])
    lines = [
        "# Protocols: every resolved value and its source",
        "",
        "Generated by `harmony-bench protocol sheet` from the task protocols in `benchmarks/` (their",
        "`sources`, `preset_docs` and `deviations`; the mmengine files' `sources` variable) and from",
        "`benchmarks/pretrain/`. Do not edit by hand: CI runs `harmony-bench protocol sheet --check`, which",
        "fails when this file differs from what the code resolves. Citations are",
        "`owner/repo@commit path:Lline` or a README command; `harmony-bench: ...` marks a setting no",
        "upstream fixes; `—` marks a value without a citation yet. See benchmarks/README.md for the format.",
        "",
        "Contents: "
        + ", ".join(f"[{name}](#{name})" for name in registry.names())
        + ", [pretraining](#pretraining)",
    ]
    for name in registry.names():
        spec = registry.get(name)
        lines += [
            "",
            f"## {name}",
            "",
            f"{spec.description}. Protocol version {spec.protocol_version}; file `{_relative(spec.path)}`; "
            f"default preset `{spec.default_preset}`; presets: {', '.join(f'`{p}`' for p in spec.presets)}.",
        ]
        lines += _deviations(spec.deviations, "every preset")
        for block in task_blocks(spec):
            lines += _render_block(name, block)
    lines += [
        "",
        "## pretraining",
        "",
        "`harmony-bench pretrain --method M`: `benchmarks/pretrain/defaults.yaml` <- `methods.yaml`",
        "(the settings of the objectives the method uses).",
    ]
    blocks, common = pretrain_blocks()
    lines += _deviations(common, "every method")
    for block in blocks:
        lines += _render_block("pretrain", block)
    return "\n".join(lines) + "\n"


def stale(path: Path = SHEET_PATH) -> list[str]:
    """Unified-diff lines between the file at ``path`` and a fresh generation (empty: up to date)."""
    fresh = generate()
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    return list(
        difflib.unified_diff(
            current.splitlines(),
            fresh.splitlines(),
            f"{path} (committed)",
            f"{path} (generated)",
            lineterm="",
        )
    )
