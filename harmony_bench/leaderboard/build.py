"""Generate the leaderboard's files in memory from the board (:mod:`.board`) and write them.

The top of the leaderboard package: it imports the board model and the renderers
(:mod:`.markdown`, :mod:`.html_page`, :mod:`.figures`); none of them imports it.

Everything is generated into a ``{relative path: bytes}`` mapping first, so
writing and ``--check`` share one code path: ``--check`` regenerates and
compares bytes, which only works because generation is deterministic (sorted
everything, no timestamps, fixed SVG salt).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harmony_bench.atomic import atomic_write_bytes
from harmony_bench.leaderboard.board import FIGURE_DIR, collect, figure_groups
from harmony_bench.leaderboard.figures import bar_chart, heat_map, reproduction_chart
from harmony_bench.leaderboard.html_page import render_html
from harmony_bench.leaderboard.markdown import render_markdown


def generate(
    record_dirs: list[Path], out_dir: Path, reported: pd.DataFrame, title: str, compare: bool = True
) -> tuple[dict[str, bytes], list[tuple[str, list[str]]]]:
    """All leaderboard files as ``{path relative to out_dir: bytes}``, and the unreadable records.

    ``compare``: check the real suites' expectations against the records (off for a synthetic board).
    """
    board = collect(record_dirs, out_dir, reported, compare)
    files: dict[str, bytes] = {}
    figures: list[tuple[str, str]] = []  # (stem, title)
    measured = [r for r in board.reproductions if r.mean is not None]
    if measured:
        for fmt, data in reproduction_chart(measured).items():
            files[f"{FIGURE_DIR}/measured-vs-published.{fmt}"] = data
        figures.append(("measured-vs-published", "measured − published, with the suites' tolerances"))
    if not board.summary.empty:
        for stem, fig_title, cells in figure_groups(board.summary):
            for fmt, data in bar_chart(cells, fig_title).items():
                files[f"{FIGURE_DIR}/{stem}.{fmt}"] = data
            figures.append((stem, fig_title))
        for fmt, data in heat_map(board.summary).items():
            files[f"{FIGURE_DIR}/heatmap.{fmt}"] = data
        figures.append(("heatmap", "backbone × task heat map"))
    files["LEADERBOARD.md"] = render_markdown(board, figures, title).encode("utf-8")
    files["leaderboard.html"] = render_html(board, figures, files, title).encode("utf-8")
    return files, board.bad


def write_files(files: dict[str, bytes], out_dir: Path) -> list[Path]:
    """Write the generated files (each atomically) and remove stale figures; return the written paths."""
    written = []
    for rel, data in sorted(files.items()):
        written.append(atomic_write_bytes(out_dir / rel, data))
    for old in sorted((out_dir / FIGURE_DIR).glob("*")) if (out_dir / FIGURE_DIR).is_dir() else []:
        if f"{FIGURE_DIR}/{old.name}" not in files and old.suffix in (".png", ".svg"):
            old.unlink()
    return written


def stale_files(files: dict[str, bytes], out_dir: Path) -> list[str]:
    """What ``--check`` reports: files that differ or are missing, and figures no longer generated."""
    problems = []
    for rel, data in sorted(files.items()):
        path = out_dir / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
        elif path.read_bytes() != data:
            problems.append(f"{rel}: out of date")
    figure_dir = out_dir / FIGURE_DIR
    for old in sorted(figure_dir.glob("*")) if figure_dir.is_dir() else []:
        if old.suffix in (".png", ".svg") and f"{FIGURE_DIR}/{old.name}" not in files:
            problems.append(f"{FIGURE_DIR}/{old.name}: no longer generated")
    return problems
