"""Published numbers (``results/reported/*.csv``): one row per paper × method × backbone × data × task.

Only numbers read from a primary source are stored, each with that source;
a number nobody could verify is absent, never estimated.  Suites refer to rows
by ``id`` so a published value is written down exactly once.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from harmony_bench.paths import REPO_ROOT
from harmony_bench.registry import UnknownNameError, suggest

REPORTED_DIR = REPO_ROOT / "results" / "reported"
COLUMNS = [
    "id",
    "paper",
    "source",
    "method",
    "arch",
    "pretrain_data",
    "epochs",
    "task",
    "metric",
    "value",
    "notes",
]


@functools.cache
def load_reported(directory: Path = REPORTED_DIR) -> pd.DataFrame:
    """All published rows; a missing column, an empty source or a duplicate id is an error naming the file."""
    frames = []
    for path in sorted(Path(directory).glob("*.csv")):
        frame = pd.read_csv(path, dtype={"epochs": "string", "notes": "string"}, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected {COLUMNS}")
        if (frame["source"].str.strip() == "").any():
            raise ValueError(f"{path}: every published number needs its source")
        frame["value"] = pd.to_numeric(frame["value"], errors="raise")
        frames.append(frame.assign(file=path.name))
    reported = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "file"])
    dupes = reported["id"][reported["id"].duplicated()].tolist()
    if dupes:
        raise ValueError(f"{directory}: duplicate published-number ids {dupes}")
    return reported


def reported_value(row_id: str, task: str | None = None, metric: str | None = None) -> tuple[float, str]:
    """``(value, "paper — source")`` of the published row ``row_id``.

    With ``task``/``metric`` (an expectation's), the row must be a number of that task and metric: a
    mistyped id would otherwise compare a cell with another table's number.

    Raises:
        ValueError: the row measures another task or metric.
    """
    reported = load_reported()
    match = reported[reported["id"] == row_id]
    if match.empty:
        raise UnknownNameError(suggest(row_id, reported["id"].tolist(), "published number"))
    row = match.iloc[0]
    for key, wanted in (("task", task), ("metric", metric)):
        if wanted is not None and row[key] != wanted:
            raise ValueError(
                f"published number {row_id!r} is {row['task']} {row['metric']}, not {task} {metric}: "
                "name the row of this task and metric (results/reported/published.csv)"
            )
    return float(row["value"]), f"{row['paper']} — {row['source']}"
