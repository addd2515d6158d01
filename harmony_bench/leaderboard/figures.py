"""Matplotlib figures for the leaderboard: one bar chart per task/metric and a backbone × task heat map.

Output must be byte-identical for the same records (``leaderboard --check``
compares committed files), so the SVG hash salt is fixed, the date metadata
is dropped, and every order is sorted.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from harmony_bench.grid import natural_key
from harmony_bench.leaderboard.comparison import published_text

SVG_METADATA = {"Date": None}
PNG_METADATA = {"Software": None}


def _matplotlib() -> object:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": "harmony-bench", "font.size": 9, "figure.dpi": 100})
    return plt


def _save(fig: object, fmt: str) -> bytes:
    buffer = io.BytesIO()
    metadata = SVG_METADATA if fmt == "svg" else PNG_METADATA
    fig.savefig(buffer, format=fmt, metadata=metadata, bbox_inches="tight")  # type: ignore[attr-defined]
    return buffer.getvalue()


def bar_chart(cells: pd.DataFrame, title: str) -> dict[str, bytes]:
    """Horizontal bars of the mean per backbone (± std over seeds), best on top; PNG and SVG bytes."""
    plt = _matplotlib()
    cells = cells.sort_values(["mean", "backbone"], ascending=[True, False])
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(cells) + 1.2))
    errors = cells["std"].fillna(0.0).to_numpy()
    colors = ["#2b6cb0" if best else "#90a4c0" for best in cells["best"]]
    ax.barh(cells["label"], cells["mean"], xerr=errors, color=colors, capsize=3)
    for y, value in enumerate(cells["mean"]):
        ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(str(cells["metric"].iloc[0]))
    ax.margins(x=0.15)
    out = {fmt: _save(fig, fmt) for fmt in ("png", "svg")}
    plt.close(fig)
    return out


def heat_map(summary: pd.DataFrame) -> dict[str, bytes]:
    """Backbone × task/metric grid of means, coloured per column (ranks within a task, not across)."""
    plt = _matplotlib()
    grid = summary.pivot_table(index="label", columns="column", values="mean", aggfunc="first")
    grid = grid.reindex(
        index=sorted(grid.index, key=natural_key), columns=sorted(grid.columns, key=natural_key)
    )
    values = grid.to_numpy(dtype=float)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (values - low) / span
    fig, ax = plt.subplots(figsize=(1.3 * grid.shape[1] + 3.0, 0.45 * grid.shape[0] + 1.5))
    ax.imshow(np.ma.masked_invalid(scaled), cmap="Blues", vmin=-0.2, vmax=1.2, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    ax.set_title("mean per backbone × task (colour: rank within each column)")
    out = {fmt: _save(fig, fmt) for fmt in ("png", "svg")}
    plt.close(fig)
    return out


def reproduction_chart(reproductions: list[Any]) -> dict[str, bytes]:
    """Measured − published per reproduced cell (± std over seeds), against the suite's tolerance band.

    A gap chart, not value bars: a 0.3-point miss is invisible on a 0-80 axis and obvious here.
    """
    plt = _matplotlib()
    rows = sorted(reproductions, key=lambda r: (r.task, r.metric, r.card))
    labels = [f"{r.card} · {r.task} {r.metric}" for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.3))
    for i, r in enumerate(rows):
        band = r.tolerance + (r.sigma * r.std if r.sigma and r.std is not None else 0.0)
        ax.fill_betweenx([i - 0.35, i + 0.35], -band, band, color="#c6f6d5", lw=0)
        color = "#2f855a" if r.verdict == "ok" else "#c53030"
        ax.errorbar(r.delta, i, xerr=0.0 if r.std is None else r.std, fmt="o", color=color, capsize=3)
        text = f"{r.mean:.2f} vs {published_text(r.published)}"
        ax.text(r.delta, i + 0.38, text, ha="center", va="bottom", fontsize=7)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_ylim(-0.7, len(rows) - 0.2)
    ax.invert_yaxis()
    ax.set_xlabel("measured − published (points); green band: the suite's tolerance")
    ax.set_title("reproductions of published numbers")
    ax.margins(x=0.25)
    out = {fmt: _save(fig, fmt) for fmt in ("png", "svg")}
    plt.close(fig)
    return out
