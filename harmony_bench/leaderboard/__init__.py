"""The leaderboard: ``results/LEADERBOARD.md``, ``results/leaderboard.html`` and figures, from the records.

``board`` collects the records into the board model, ``markdown`` and
``html_page`` render it, ``figures`` draws with matplotlib, and ``build``
generates every file (deterministically, in memory) and writes them.  CI runs
``harmony-bench leaderboard --check`` so the committed files can never drift
from the committed records.
"""

from __future__ import annotations

from pathlib import Path

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


__all__ = ["DEFAULT_TITLE", "RESULTS_DIR", "build_leaderboard", "generate", "stale_files", "write_files"]
