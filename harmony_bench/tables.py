"""Result records → a backbone × task comparison table (pandas does the grouping).

A cell aggregates the records of one backbone *checkpoint* (a card's weights,
identified by their sha256), one task, one protocol version, one preset, one
kind of data (real or synthetic) and one copy of the dataset (its name and
root) — those are never mixed, because a number is only comparable with
numbers measured the same way: a smoke preset is not a paper run, two
checkpoints of one card are two models, and a run on a damaged copy of the
data is not a rerun of the run on the clean one.  A task measured on several
copies gets one column per copy, tagged with its root.  A card
whose records come from more than one checkpoint gets one row per checkpoint
(``card@sha8``).

Cells show mean ± std over seeds with the seed count, and how many runs of
the cell failed (a failed run is not a seed, but hiding it would flatter the
cell).  A seed that was run twice (a rerun) counts once: the newest completed
record of each seed is kept and the others are dropped, with a note saying
how many — averaging a seed with itself would shrink the std and inflate n.
The best mean of each column is flagged here (:func:`mark_best`, using the
metric's own ``higher_is_better``) and shown by :mod:`harmony_bench.grid`, the
renderer the leaderboard uses too.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping
from pathlib import PurePath
from typing import Any

import pandas as pd

from harmony_bench.grid import (
    Cell,
    CellCollision,
    Grid,
    Label,
    build_grid,
    latex_escape,
    md_cell_safe,
    natural_key,
    to_csv,
    to_frame,
    to_html,
    to_latex,
    to_markdown,
)
from harmony_bench.results import is_metric_leaf

KEY_COLUMNS = ["backbone", "checkpoint", "task", "protocol_version", "preset", "synthetic", "dataset"]
DEDUPE_KEYS = [*KEY_COLUMNS, "seed"]
COLUMN_KEYS = ["task", "metric", "protocol_version", "preset", "synthetic", "dataset"]  # one table column
DIMENSIONS = ("backbone", "task", "metric")
FORMATS = ("md", "latex", "csv", "html", "json")
FRAME_COLUMNS = [
    *KEY_COLUMNS,
    "checkpoint_label",
    "seed",
    "state",
    "metric",
    "value",
    "higher_is_better",
    "path",
    "record_id",
    "end",
]
RANDOM_INIT = "random-init"


# --------------------------------------------------------------------------- ordering


def version_key(version: object) -> tuple[int, Any]:
    """Sort key for protocol versions: PEP 440 / semver order when ``packaging`` parses it.

    ``"10"`` must sort after ``"9"`` and ``"1.0rc1"`` before ``"1.0"``; a
    version ``packaging`` cannot parse (or a missing ``packaging``) falls back
    to :func:`natural_key`, and sorts after every parseable one.
    """
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with matplotlib
        return (1, natural_key(version))
    try:
        return (0, Version(str(version)))
    except InvalidVersion:
        return (1, natural_key(version))


# --------------------------------------------------------------------------- records → frame


def metric_leaves(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """``(dotted name, value, higher_is_better)`` for every leaf of a record's nested metrics."""
    for name, node in metrics.items():
        if is_metric_leaf(node):
            yield f"{prefix}{name}", node.get("value"), bool(node.get("higher_is_better", True))
        elif isinstance(node, Mapping):
            yield from metric_leaves(node, f"{prefix}{name}.")


def is_headline_metric(name: str) -> bool:
    """Default table metrics: top-level leaves, plus a group's ``AP`` or ``R@1``.

    The groups are COCO's ``bbox.AP``, ``segm.AP`` and retrieval's ``image_to_text.R@1``,
    ``text_to_image.R@1``.
    """
    parts = str(name).split(".")
    return len(parts) == 1 or (len(parts) == 2 and parts[1] in ("AP", "R@1"))


def checkpoint_identity(checkpoint: Mapping[str, Any]) -> tuple[str, str]:
    """``(identity, short label)`` of a record's weights: the sha256, else the source, else random init.

    The sha256 is what makes two runs "the same model"; a record without one
    (weights that were not a local file) falls back to where they came from.
    """
    sha, source = checkpoint.get("sha256"), checkpoint.get("source")
    if sha:
        return str(sha), str(sha)[:8]
    if source:
        return f"source:{source}", PurePath(str(source)).name or str(source)
    return RANDOM_INIT, RANDOM_INIT


def dataset_identity_key(dataset: Mapping[str, Any]) -> str:
    """Which copy of the data a record measured: ``name:root`` (two roots are two datasets)."""
    name, root = dataset.get("name") or "", dataset.get("root")
    return f"{name}:{root}" if root else str(name)


def _base_row(record: dict[str, Any]) -> dict[str, Any]:
    checkpoint, label = checkpoint_identity(record["backbone"]["checkpoint"])
    return {
        "backbone": record["backbone"]["name"],
        "checkpoint": checkpoint,
        "checkpoint_label": label,
        "task": record["task"]["name"],
        "protocol_version": record["task"]["protocol_version"],
        "preset": record["task"].get("preset") or "",  # "" (no preset) groups and merges like any value
        "synthetic": bool(record["dataset"]["synthetic"]),
        "dataset": dataset_identity_key(record["dataset"]),
        "seed": record["seed"],
        "state": record["status"]["state"],
        "path": record.get("_path"),
        "record_id": record["record_id"],
        "end": record["timing"]["end"],  # fixed-width ISO UTC: text order is time order
    }


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format: one row per (record, metric); a failed record is one row with no metric."""
    rows = []
    for record in records:
        base = _base_row(record)
        if base["state"] != "completed":
            rows.append({**base, "metric": None, "value": None, "higher_is_better": None})
            continue
        for name, value, higher in metric_leaves(record["metrics"]):
            rows.append({**base, "metric": name, "value": value, "higher_is_better": higher})
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


# --------------------------------------------------------------------------- aggregation


def drop_duplicate_runs(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep only the newest completed record per cell × seed; return the frame and how many were dropped.

    A rerun of a seed (same backbone checkpoint, task, protocol version,
    preset, data kind, dataset copy and seed) replaces the earlier run rather than counting
    as another seed.  Failed runs are left alone: they are counted, never
    averaged, and the table shows them.
    """
    done = frame["state"] == "completed"
    runs = frame.loc[done, [*DEDUPE_KEYS, "record_id", "end"]].drop_duplicates("record_id")
    newest = runs.sort_values(["end", "record_id"]).drop_duplicates(DEDUPE_KEYS, keep="last")
    dropped = len(runs) - len(newest)
    return frame[~done | frame["record_id"].isin(newest["record_id"])], dropped


def _failed_counts(frame: pd.DataFrame) -> pd.DataFrame:
    failed = frame[frame["state"] != "completed"]
    return failed.groupby(KEY_COLUMNS, dropna=False).size().rename("failed").reset_index()


def _record_paths(values: pd.Series) -> list[str]:
    return sorted({p for p in values if isinstance(p, str)})


def backbone_labels(summary: pd.DataFrame) -> pd.Series:
    """Row label per summary row: the card name, or ``card@sha8`` when the card has several checkpoints."""
    several = summary.groupby("backbone")["checkpoint"].transform("nunique") > 1
    tagged = summary["backbone"].astype(str) + "@" + summary["checkpoint_label"].astype(str)
    return tagged.where(several, summary["backbone"].astype(str))


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, std, seed count, failed-run count and best flag per cell × metric.

    ``metrics`` picks metrics by dotted name; by default only top-level
    metrics are shown (per-class groups would swamp the table).  The number of
    duplicate runs dropped is in ``summary.attrs["duplicates_dropped"]``.
    """
    frame, dropped = drop_duplicate_runs(frame)
    done = frame[frame["state"] == "completed"]
    keep = done["metric"].isin(metrics) if metrics else done["metric"].map(is_headline_metric)
    done = done[keep.astype(bool)]
    done = done[done["value"].notna()]
    columns = [*KEY_COLUMNS, "backbone_label", "metric", "mean", "std", "seeds", "failed"]
    columns += ["higher_is_better", "records"]
    if done.empty:
        summary = pd.DataFrame(columns=[*columns, "dataset_tag", "best"])
    else:
        grouped = done.groupby([*KEY_COLUMNS, "metric"], dropna=False)
        summary = grouped.agg(
            checkpoint_label=("checkpoint_label", "first"),
            mean=("value", "mean"),
            std=("value", "std"),
            seeds=("seed", "nunique"),
            higher_is_better=("higher_is_better", "first"),
            records=("path", _record_paths),
        ).reset_index()
        summary = summary.merge(_failed_counts(frame), on=KEY_COLUMNS, how="left")
        summary["failed"] = summary["failed"].fillna(0).astype(int)
        summary["backbone_label"] = backbone_labels(summary)
        summary["dataset_tag"] = dataset_tags(summary)
        summary = mark_best(summary[[*columns, "dataset_tag"]], COLUMN_KEYS)
    summary.attrs["duplicates_dropped"] = dropped
    return summary


def dataset_tags(summary: pd.DataFrame) -> pd.Series:
    """The dataset root where one task was measured on several copies of its data, else ``""``."""
    keys = [k for k in COLUMN_KEYS if k != "dataset"]
    several = summary.groupby(keys, dropna=False)["dataset"].transform("nunique") > 1
    root = summary["dataset"].astype(str).str.split(":", n=1).str[-1]
    return root.where(several, "")


def mark_best(summary: pd.DataFrame, column_keys: list[str]) -> pd.DataFrame:
    """Flag the best mean among the cells that share ``column_keys`` (one table column)."""
    best = []
    for _, group in summary.groupby(column_keys, dropna=False, sort=False):
        higher = bool(group["higher_is_better"].iloc[0])
        target = group["mean"].max() if higher else group["mean"].min()
        best += [(index, len(group) > 1 and value == target) for index, value in group["mean"].items()]
    flags = dict(best)
    return summary.assign(best=[flags[i] for i in summary.index])


def table_notes(summary: pd.DataFrame) -> list[str]:
    """Footnotes a reader needs to trust the table (today: duplicate runs that were dropped)."""
    dropped = int(summary.attrs.get("duplicates_dropped", 0))
    if not dropped:
        return []
    runs = "run" if dropped == 1 else "runs"
    return [f"{dropped} duplicate {runs} of an already-recorded seed dropped (the newest record is kept)"]


# --------------------------------------------------------------------------- display


def format_cell(mean: float, std: float, seeds: int, failed: int = 0) -> str:
    """``81.20 ± 0.15 (n=3)``; a single seed shows no spread; failed runs are counted."""
    text = f"{mean:.2f} ± {std:.2f}" if seeds > 1 and pd.notna(std) else f"{mean:.2f}"
    extra = f", {failed} failed" if failed else ""
    return f"{text} (n={seeds}{extra})"


def measurement_parts(row: Mapping[str, Any]) -> tuple[str, ...]:
    """``("v2", "paper", "synthetic")``: what makes two cells of one task incomparable."""
    parts = [
        f"v{row['protocol_version']}",
        str(row.get("preset") or ""),
        "synthetic" if row["synthetic"] else "",
        f"data {row['dataset_tag']}" if row.get("dataset_tag") else "",
    ]
    return tuple(p for p in parts if p)


def measurement_tag(row: Mapping[str, Any]) -> str:
    """``[v2, paper, synthetic]``: :func:`measurement_parts` in one bracket."""
    return "[" + ", ".join(measurement_parts(row)) + "]"


def cell_labels(row: Mapping[str, Any], rows: str, cols: str) -> tuple[Label, Label]:
    """``(row label, column label)`` of a summary row.

    The dimension that is neither rows nor columns joins the column label, and
    the protocol version, preset and data kind go with the task, so cells
    measured differently can never share a label (and hence a cell).
    """
    backbone = str(row.get("backbone_label") or row["backbone"])
    parts = {"backbone": backbone, "task": str(row["task"]), "metric": str(row["metric"])}
    rest = [parts[d] for d in DIMENSIONS if d not in (rows, cols)]
    row_text, col_text = parts[rows], " / ".join([parts[cols], *rest])
    tag = measurement_parts(row)
    if rows == "task":
        return Label(row_text, tag), Label(col_text)
    return Label(row_text), Label(col_text, tag)


def summary_grid(summary: pd.DataFrame, rows: str = "backbone", cols: str = "task") -> Grid:
    """The display table: ``rows`` × ``cols`` (backbone/task/metric), the best cell of each column flagged."""
    if rows == cols or rows not in DIMENSIONS or cols not in DIMENSIONS:
        raise ValueError(f"--rows and --cols must be two different ones of {', '.join(DIMENSIONS)}")
    cells = []
    for _, r in summary.iterrows():
        text = format_cell(r["mean"], r["std"], r["seeds"], r["failed"])
        cells.append((*cell_labels(r, rows, cols), Cell(text, bool(r["best"]), float(r["mean"]))))
    try:
        return build_grid(cells, corner=rows)
    except CellCollision:
        raise ValueError(
            f"--rows {rows} --cols {cols} would put two results in one cell; "
            "pick --metric or rows/cols that include backbone and task"
        ) from None


def pivot(summary: pd.DataFrame, rows: str = "backbone", cols: str = "task") -> pd.DataFrame:
    """:func:`summary_grid` as plain text: cells as strings, best marked ``*``, nothing measured ``—``."""
    grid = summary_grid(summary, rows, cols)
    return pd.DataFrame() if grid.empty else to_frame(grid)


def footnote(notes: list[str], fmt: str) -> str:
    """The notes under a rendered table (md/html/latex); CSV and JSON stay machine-readable."""
    if not notes or fmt not in ("md", "html", "latex"):
        return ""
    if fmt == "html":
        return "".join(f"\n<p><small>Note: {html.escape(n)}.</small></p>" for n in notes)
    if fmt == "latex":
        return "".join(f"\n% Note: {latex_escape(n)}." for n in notes)
    return "\n" + "".join(f"\nNote: {n}." for n in notes)


def summary_json(summary: pd.DataFrame) -> str:
    """Machine-readable cells: one object per backbone checkpoint × task × protocol × preset × data kind."""
    rows = []
    keys = [*KEY_COLUMNS, "backbone_label", "metric", "seeds", "failed", "higher_is_better", "best"]
    for _, r in summary.iterrows():
        row = {k: r[k] for k in keys}
        row.update(mean=float(r["mean"]), std=None if pd.isna(r["std"]) else float(r["std"]))
        row.update(records=list(r["records"]), seeds=int(r["seeds"]), failed=int(r["failed"]))
        row.update(best=bool(r["best"]), synthetic=bool(r["synthetic"]), preset=r["preset"] or None)
        rows.append(row)
    return json.dumps(rows, indent=2, ensure_ascii=False)


def render(grid: Grid, fmt: str, summary: pd.DataFrame | None = None) -> str:
    """Render the grid as Markdown, LaTeX, CSV, HTML, or (from ``summary``) JSON.

    Markdown escapes only what would break a row (:func:`~harmony_bench.grid.md_cell_safe`): this
    table is read as text, and names such as ``image_to_text.R@1`` stay as typed.
    """
    if fmt == "json":
        return summary_json(summary if summary is not None else pd.DataFrame())
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if grid.empty:
        return "(no completed records)"
    renderers = {"csv": to_csv, "latex": to_latex, "html": to_html}
    if fmt in renderers:
        return renderers[fmt](grid)
    return to_markdown(grid, escape=md_cell_safe)


def render_summary(summary: pd.DataFrame, rows: str = "backbone", cols: str = "task", fmt: str = "md") -> str:
    """A summary → the rendered table with its footnotes (for the formats that have room for them)."""
    grid = summary_grid(summary, rows, cols) if fmt != "json" else build_grid([], rows)
    return render(grid, fmt, summary) + footnote(table_notes(summary), fmt)


def build_table(
    records: list[dict[str, Any]],
    metrics: list[str] | None = None,
    rows: str = "backbone",
    cols: str = "task",
    fmt: str = "md",
) -> str:
    """Records → rendered table in one call (what the CLI and the demo use)."""
    return render_summary(summarize(records_to_frame(records), metrics), rows, cols, fmt)
