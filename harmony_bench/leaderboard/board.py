"""The board model: what the leaderboard shows, collected from the records (renderers sit above it).

:func:`collect` reads and aggregates the records into a :class:`Board` (cells, published numbers as
source tables, reproductions, unreadable records); the renderers (:mod:`.markdown`, :mod:`.html_page`,
:mod:`.figures`) and the generator (:mod:`.build`) import it, never the other way round.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmony_bench.grid import Cell, Grid, Label, build_grid, natural_key
from harmony_bench.leaderboard.comparison import Reproduction, SourceTable, reproductions, source_tables
from harmony_bench.tables import format_cell, measurement_parts, summarize, table_notes

HEADLINE_METRICS = [
    "top1",
    "mIoU",
    "bbox.AP",
    "segm.AP",
    "image_to_text.R@1",
    "text_to_image.R@1",
    "mean_recall",
]
FIGURE_DIR = "figures"


@dataclass
class Board:
    """The aggregated cells, the published numbers (as source tables), reproductions, unreadable records."""

    summary: pd.DataFrame
    reported: pd.DataFrame
    n_records: int
    bad: list[tuple[str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. duplicate runs dropped by the aggregation
    tables: list[SourceTable] = field(default_factory=list)
    reproductions: list[Reproduction] = field(default_factory=list)

    def source_number(self, citation: str) -> int | None:
        """The footnote number of a ``paper — source`` / ``paper: source`` citation, if it is a table's."""
        for table in self.tables:
            if citation in (table.citation, f"{table.paper} — {table.source}"):
                return table.number
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _relative(path: str, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def collect(record_dirs: list[Path], out_dir: Path, reported: pd.DataFrame, compare: bool = True) -> Board:
    """Read and aggregate the records; label rows and columns; links relative to ``out_dir``.

    Rows are backbone checkpoints (``card@sha8`` when a card has several) and
    data kinds; columns carry the protocol version and preset, so cells measured
    differently never share a row × column.  Both are ordered with
    ``natural_key`` so ``v10`` comes after ``v9``.
    """
    from harmony_bench.results import iter_records
    from harmony_bench.tables import records_to_frame

    existing = [d for d in record_dirs if Path(d).exists()]
    records, bad = iter_records(existing)
    summary = summarize(records_to_frame(records), HEADLINE_METRICS)
    notes = table_notes(summary)
    if not summary.empty:
        rows = summary.to_dict("records")
        summary = summary.assign(
            label=[str(row_label(r)) for r in rows],
            column=[str(column_label(r)) for r in rows],
            links=[[_relative(p, out_dir) for p in r["records"]] for r in rows],
        )
        order = sorted(summary.index, key=lambda i: _display_key(summary.loc[i]))
        summary = summary.loc[order].reset_index(drop=True)
    bad_rel = sorted((_relative(str(p), out_dir), problems) for p, problems in bad)
    found = reproductions([r for r in records if r["status"]["state"] == "completed"]) if compare else []
    tables = source_tables(reported, found)
    return Board(summary, reported, len(records), bad_rel, notes, tables, found)


def row_label(row: dict[str, Any]) -> Label:
    """``alpha`` or ``alpha [synthetic]``: the backbone checkpoint and the data kind."""
    return Label(str(row["backbone_label"]), ("synthetic",) if row["synthetic"] else ())


def column_label(row: dict[str, Any]) -> Label:
    """``imagenet-linear / top1 [v1, paper]``: task, metric, protocol version and preset."""
    return Label(f"{row['task']} / {row['metric']}", measurement_parts({**row, "synthetic": False}))


def measured_grid(summary: pd.DataFrame) -> Grid:
    """The measured table both pages render: backbone rows × task / metric columns, each cell's records."""
    cells = [
        (
            row_label(r),
            column_label(r),
            Cell(
                format_cell(r["mean"], r["std"], r["seeds"], r["failed"]),
                bool(r["best"]),
                float(r["mean"]),
                tuple(r["links"]),
            ),
        )
        for r in summary.to_dict("records")
    ]
    return build_grid(cells, corner="backbone")


def _display_key(row: pd.Series) -> tuple[Any, ...]:
    return natural_key(row["column"]), natural_key(row["label"])


def figure_groups(summary: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(file stem, title, cells) per task × metric × protocol version × preset × data kind."""
    groups = []
    keys = ["task", "metric", "protocol_version", "preset", "synthetic", "dataset_tag"]
    for (task, metric, version, preset, synthetic, data), cells in summary.groupby(keys, sort=True):
        kind = ", synthetic data" if synthetic else ""
        kind += f", data {data}" if data else ""
        preset_text = f", {preset}" if preset else ""
        stem = _slug(
            f"{task}-{metric}-v{version}-{preset}{'-synthetic' if synthetic else ''}"
            + (f"-{data}" if data else "")
        )
        groups.append((stem, f"{task} — {metric} (protocol v{version}{preset_text}{kind})", cells))
    return sorted(groups, key=lambda g: natural_key(g[0]))


def published_rows(reported: pd.DataFrame) -> list[dict[str, Any]]:
    """Published numbers in display order."""
    if reported.empty:
        return []
    ordered = reported.sort_values(["task", "metric", "arch", "method", "pretrain_data", "epochs", "id"])
    return ordered.to_dict("records")
