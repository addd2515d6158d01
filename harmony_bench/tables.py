"""Result records → a backbone × task comparison table (pandas does the grouping).

A cell aggregates the records of one backbone, one task, one protocol version
and one kind of data (real or synthetic) — those are never mixed, because a
number is only comparable with numbers measured the same way.  Cells show
mean ± std over seeds and the seed count.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harmony_bench.results import flatten_metrics

KEY_COLUMNS = ["backbone", "task", "protocol_version", "synthetic"]


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format: one row per (record, metric) of completed records."""
    rows = []
    for record in records:
        if record["status"]["state"] != "completed":
            continue
        for metric, value in flatten_metrics(record["metrics"]).items():
            rows.append(
                {
                    "backbone": record["backbone"]["name"],
                    "task": record["task"]["name"],
                    "protocol_version": record["task"]["protocol_version"],
                    "synthetic": bool(record["dataset"]["synthetic"]),
                    "seed": record["seed"],
                    "metric": metric,
                    "value": value,
                }
            )
    return pd.DataFrame(rows, columns=[*KEY_COLUMNS, "seed", "metric", "value"])


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and seed count per backbone × task × protocol × data kind × metric."""
    if metrics:
        frame = frame[frame["metric"].isin(metrics)]
    else:  # default: top-level metrics only (per-class groups would swamp the table)
        frame = frame[~frame["metric"].str.contains(".", regex=False)]
    grouped = frame.groupby([*KEY_COLUMNS, "metric"], dropna=False)["value"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def format_cell(mean: float, std: float, seeds: int) -> str:
    """``81.20 ± 0.15 (n=3)``; a single seed shows no spread."""
    if seeds > 1 and pd.notna(std):
        return f"{mean:.2f} ± {std:.2f} (n={seeds})"
    return f"{mean:.2f} (n={seeds})"


def pivot(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows = backbone, columns = task / metric [protocol, data kind]."""
    if summary.empty:
        return pd.DataFrame()
    summary = summary.assign(
        cell=[
            format_cell(m, s, n)
            for m, s, n in zip(summary["mean"], summary["std"], summary["seeds"], strict=True)
        ],
        column=[
            f"{t} / {m} [v{v}{', synthetic' if syn else ''}]"
            for t, m, v, syn in zip(
                summary["task"],
                summary["metric"],
                summary["protocol_version"],
                summary["synthetic"],
                strict=True,
            )
        ],
    )
    table = summary.pivot(index="backbone", columns="column", values="cell").fillna("—")
    table.columns.name = None
    return table


def render(table: pd.DataFrame, fmt: str) -> str:
    """Render the pivoted table as markdown, CSV or JSON."""
    if table.empty:
        return "(no completed records)"
    if fmt == "csv":
        return table.to_csv()
    if fmt == "json":
        return table.to_json(orient="index", indent=2, force_ascii=False)
    header = ["backbone", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(idx), *map(str, row)]) + " |" for idx, row in table.iterrows()]
    return "\n".join(lines)
