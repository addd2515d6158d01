"""``harmony-bench leaderboard``: regenerate (or ``--check``) the leaderboard files from the records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench leaderboard                 # results/records → results/LEADERBOARD.md, ...
  harmony-bench leaderboard --check         # exit 1 when the committed files are stale (CI runs this)
  harmony-bench leaderboard --records results/synthetic/demo --out results/synthetic/demo
"""


def register(subparsers: Any) -> None:
    """Add the ``leaderboard`` subcommand."""
    parser = add_command(
        subparsers, "leaderboard", "Regenerate the leaderboard (Markdown, HTML page, figures).", EXAMPLES
    )
    parser.add_argument("--records", type=Path, action="append", help="record directory (repeatable)")
    parser.add_argument("--out", type=Path, help="where the files go (default: results/)")
    parser.add_argument("--title", help="page title")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the files, or with ``--check`` report which ones differ from a fresh generation."""
    from harmony_bench.leaderboard import (
        DEFAULT_TITLE,
        RESULTS_DIR,
        build_leaderboard,
        stale_files,
        write_files,
    )

    out = args.out or RESULTS_DIR
    record_dirs = args.records or [RESULTS_DIR / "records"]
    files, bad = build_leaderboard(record_dirs, out, args.title or DEFAULT_TITLE)
    for path, problems in bad:
        print(f"warning: unreadable record {path}: {'; '.join(problems)}", file=sys.stderr)
    if args.check:
        stale = stale_files(files, out)
        for problem in stale:
            print(f"stale: {out / problem}", file=sys.stderr)
        if stale:
            print(
                "error: the leaderboard is out of date; run `harmony-bench leaderboard` and commit",
                file=sys.stderr,
            )
            return 1
        print(f"leaderboard in {out} is up to date ({len(files)} files)")
        return 1 if bad else 0
    written = write_files(files, out)
    print(f"wrote {len(written)} files to {out}: {', '.join(p.name for p in written if p.suffix != '.svg')}")
    return 1 if bad else 0
