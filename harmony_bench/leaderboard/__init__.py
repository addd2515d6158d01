"""The leaderboard: ``results/LEADERBOARD.md``, ``results/leaderboard.html`` and figures, from the records.

``board`` collects the records into the board model, ``markdown`` and
``html_page`` render it, ``figures`` draws with matplotlib, and ``build``
generates every file (deterministically, in memory) and writes them.  CI runs
``harmony-bench leaderboard --check`` so the committed files can never drift
from the committed records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony_bench.atomic import atomic_write_text
from harmony_bench.leaderboard.build import generate, stale_files, write_files
from harmony_bench.paths import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "results"
DEFAULT_TITLE = "harmony-bench leaderboard"


def build_leaderboard(
    record_dirs: list[Path], out_dir: Path, title: str = DEFAULT_TITLE, compare: bool = True
) -> tuple[dict[str, bytes], list[tuple[str, list[str]]]]:
    """The files for ``record_dirs`` (links relative to ``out_dir``) and the unreadable records.

    ``compare=False`` leaves out the measured-vs-published checks (a synthetic suite's own board).
    """
    from harmony_bench.suites.reported import load_reported

    return generate(record_dirs, out_dir, load_reported(), title, compare)


def write_suite_outputs(suite: Any) -> str:
    """A suite's comparison table, and for a synthetic suite its own ``TABLE.md`` and leaderboard files.

    Returns the text to print: the table, then (synthetic suites) where the files went.  A real suite's
    records feed ``results/LEADERBOARD.md`` instead (``harmony-bench leaderboard``).
    """
    from harmony_bench.leaderboard.board import HEADLINE_METRICS
    from harmony_bench.results import iter_records
    from harmony_bench.tables import build_table

    records, _ = iter_records([suite.records]) if suite.records.exists() else ([], [])
    table = build_table(records, HEADLINE_METRICS)
    text = f"\n{table}"
    if suite.synthetic:
        atomic_write_text(suite.output / "TABLE.md", table + "\n")
        title = f"harmony-bench suite {suite.name} (SYNTHETIC smoke data: not benchmark numbers)"
        files, _ = build_leaderboard([suite.records], suite.output, title, compare=False)
        write_files(files, suite.output)
        text += f"\n\ntable and leaderboard: {suite.output / 'TABLE.md'}, {suite.output / 'leaderboard.html'}"
    return text


__all__ = [
    "DEFAULT_TITLE",
    "RESULTS_DIR",
    "build_leaderboard",
    "generate",
    "stale_files",
    "write_files",
    "write_suite_outputs",
]
