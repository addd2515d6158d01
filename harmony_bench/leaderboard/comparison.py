"""Published numbers as the papers print them, and measured results next to the numbers they reproduce.

``results/reported/*.csv`` holds one published number per row.  Here they are pivoted back into one
table per source table (``paper`` × ``source``): rows are method · backbone · pretraining data · epochs in
the order the source lists them, columns are task × metric, notes become lettered footnotes and each
source a numbered one.  A suite expectation that names a published row (``reported: ID``) puts a
"measured" row under that row, with the mean over seeds, the difference and the suite's tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Column order: the tasks as the papers order them (classification, segmentation, detection).
TASK_ORDER = [
    "imagenet-zeroshot",
    "imagenet-knn",
    "imagenet-linear",
    "imagenet-finetune",
    "imagenet-1k",
    "ade20k",
    "ade20k-linear",
    "coco",
]
METRIC_ORDER = ["top1", "top5", "mIoU", "bbox.AP", "segm.AP"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Reproduction:
    """One suite expectation and what the records say about it (``suites.checks.Check``)."""

    suite: str
    backbone: str  # the suite's backbone key (its card name for the shipped suites)
    card: str
    task: str
    metric: str
    preset: str | None
    reported: str | None
    published: float
    tolerance: float
    sigma: float
    source: str
    mean: float | None
    std: float | None
    seeds: int
    verdict: str

    @property
    def delta(self) -> float | None:
        """Measured minus published (None when not measured)."""
        return None if self.mean is None else self.mean - self.published

    @property
    def tolerance_text(self) -> str:
        """``±0.5`` or ``±0.5 + 2σ``."""
        return f"±{self.tolerance:g}" + (f" + {self.sigma:g}σ" if self.sigma else "")

    @property
    def measured_text(self) -> str:
        """``81.20 ± 0.15 (n=3)``, or ``—`` when not measured."""
        if self.mean is None:
            return "—"
        spread = f" ± {self.std:.2f}" if self.std is not None and not math.isnan(self.std) else ""
        return f"{self.mean:.2f}{spread} (n={self.seeds})"


@dataclass
class PublishedCell:
    """A published value with its footnote letter (if any) and the row id it came from."""

    value: float
    row_id: str
    note: str | None = None


@dataclass
class ComparisonRow:
    """One line of a source table: method · backbone · data · epochs (· variant when the source has two)."""

    method: str
    arch: str
    data: str
    epochs: str
    variant: str
    cells: dict[str, PublishedCell] = field(default_factory=dict)
    measured: list[tuple[str, dict[str, Reproduction]]] = field(default_factory=list)  # (card, column -> r)

    @property
    def label(self) -> str:
        """The method, with the variant that tells two lines of the same setting apart."""
        return f"{self.method} ({self.variant})" if self.variant else self.method


@dataclass
class SourceTable:
    """One source's comparison table, numbered as its footnote."""

    number: int
    paper: str
    source: str
    columns: list[str]
    rows: list[ComparisonRow]
    notes: dict[str, str]  # letter -> note text
    column_notes: dict[str, str]  # column -> letter (a note every cell of that column shares)

    @property
    def citation(self) -> str:
        """``paper: source``."""
        return f"{self.paper}: {self.source}"


def published_text(value: float) -> str:
    """A published number as its source prints it, never rounded away.

    One decimal (``50.0``), or more when the source gives more (MAE's reference ``83.664``, a loss ``0.731``).
    """
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def column_label(task: str, metric: str) -> str:
    """``imagenet-linear top1``."""
    return f"{task} {metric}"


def _column_key(column: tuple[str, str]) -> tuple[int, str, int, str]:
    task, metric = column
    t = TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER)
    m = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
    return t, task, m, metric


def source_tables(reported: pd.DataFrame, reproductions: list[Reproduction]) -> list[SourceTable]:
    """The published numbers pivoted per source table, numbered in first-appearance order."""
    if reported.empty:
        return []
    by_id: dict[str, list[Reproduction]] = {}
    for r in reproductions:  # every card that reproduces a row (two suites may reproduce the same one)
        if r.reported:
            by_id.setdefault(r.reported, []).append(r)
    tables = []
    groups = reported.groupby(["paper", "source"], sort=False, dropna=False)
    for number, ((paper, source), rows) in enumerate(groups, 1):
        tables.append(_table(number, str(paper), str(source), rows.to_dict("records"), by_id))
    return tables


def _table(
    number: int, paper: str, source: str, rows: list[dict[str, Any]], by_id: dict[str, list[Reproduction]]
) -> SourceTable:
    columns = sorted({(r["task"], r["metric"]) for r in rows}, key=_column_key)
    labels = [column_label(*c) for c in columns]
    base = [(r["method"], r["arch"], r["pretrain_data"] or "", r["epochs"] or "") for r in rows]
    counts: dict[tuple[Any, ...], int] = {}
    for key, r in zip(base, rows, strict=True):
        counts[(*key, r["task"], r["metric"])] = counts.get((*key, r["task"], r["metric"]), 0) + 1
    lines: dict[tuple[str, ...], ComparisonRow] = {}
    notes: dict[str, str] = {}
    for key, r in zip(base, rows, strict=True):
        # two numbers for one setting and column (e.g. two input sizes): the note tells the lines apart
        variant = (r["notes"] or "") if counts[(*key, r["task"], r["metric"])] > 1 else ""
        line = lines.setdefault((*key, variant), ComparisonRow(*key, variant))
        column = column_label(r["task"], r["metric"])
        note = (r["notes"] or "") if not variant else ""
        if column in line.cells:  # the same setting twice with the same note: no line could tell them apart
            raise ValueError(
                f"published rows {line.cells[column].row_id!r} and {r['id']!r} ({paper}) give the same "
                "method, arch, data, epochs, task and metric; tell them apart in their notes (published.csv)"
            )
        line.cells[column] = PublishedCell(float(r["value"]), str(r["id"]), note or None)
    shared = _shared_notes(list(lines.values()), labels)
    column_notes = {column: _letter(notes, shared[column]) for column in labels if column in shared}
    for line in lines.values():
        for column, cell in line.cells.items():
            if cell.note is not None:  # a note the whole column shares is the column's footnote
                cell.note = None if column in shared else _letter(notes, cell.note)
    for line in lines.values():
        _attach_measured(line, by_id)
    return SourceTable(number, paper, source, labels, list(lines.values()), notes, column_notes)


def _shared_notes(lines: list[ComparisonRow], columns: list[str]) -> dict[str, str]:
    """Columns whose cells all carry the same note: the note goes on the column instead."""
    shared = {}
    for column in columns:
        texts = {line.cells[column].note for line in lines if column in line.cells}
        if len(texts) == 1 and None not in texts:
            shared[column] = texts.pop()
    return shared  # column -> note text (turned into a letter by the caller)


def _letter(notes: dict[str, str], text: str) -> str:
    for letter, known in notes.items():
        if known == text:
            return letter
    letter = LETTERS[len(notes) % len(LETTERS)] * (1 + len(notes) // len(LETTERS))
    notes[letter] = text
    return letter


def _attach_measured(line: ComparisonRow, by_id: dict[str, list[Reproduction]]) -> None:
    """Measured rows under a published row: one per card that reproduces any of its cells."""
    per_card: dict[str, dict[str, Reproduction]] = {}
    for column, cell in line.cells.items():
        for reproduction in by_id.get(cell.row_id, []):
            if reproduction.mean is not None:
                per_card.setdefault(reproduction.card, {})[column] = reproduction
    line.measured = sorted(per_card.items())


def reproductions(records: list[dict[str, Any]], suite_dirs: list[Path] | None = None) -> list[Reproduction]:
    """Every expectation of the real (non-synthetic) suites, checked against ``records``.

    Synthetic suites are left out: a smoke number is never set against a published one.
    """
    from harmony_bench.suites.checks import suite_checks
    from harmony_bench.suites.spec import load_suite, suite_files

    files = suite_files() if suite_dirs is None else {p.stem: p for d in suite_dirs for p in d.glob("*.yaml")}
    found = []
    for name in sorted(files):
        suite = load_suite(files[name])
        if suite.synthetic or not suite.expect:
            continue
        for check in suite_checks(suite, records):
            e = check.expectation
            found.append(
                Reproduction(
                    suite=suite.name,
                    backbone=e.backbone,
                    card=_card_of(suite, e.backbone),
                    task=e.task,
                    metric=e.metric,
                    preset=e.preset,
                    reported=e.reported,
                    published=e.value,
                    tolerance=e.tolerance,
                    sigma=e.sigma,
                    source=e.source,
                    mean=check.mean,
                    std=check.std,
                    seeds=check.seeds,
                    verdict=check.verdict,
                )
            )
    return found


def _card_of(suite: Any, key: str) -> str:
    entry = next((b for b in suite.backbones if b.key == key), None)
    return entry.card if entry is not None else key
