"""``harmony-bench table``: aggregate result records into a backbone × task table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench table                       # every record under results/records
  harmony-bench table results/records/ --format csv
  harmony-bench table runs/*.json --metric top1 --metric mIoU
  harmony-bench table results/records/ --format latex --rows task --cols backbone
"""


def register(subparsers: Any) -> None:
    """Add the ``table`` subcommand."""
    parser = add_command(subparsers, "table", "Aggregate result records into a comparison table.", EXAMPLES)
    parser.add_argument("paths", nargs="*", type=Path, metavar="RESULTS", help="record files or directories")
    parser.add_argument("--format", choices=["md", "latex", "csv", "html", "json"], default="md")
    parser.add_argument("--metric", action="append", help="metric to show (dotted name); repeatable")
    parser.add_argument("--rows", choices=["backbone", "task", "metric"], default="backbone")
    parser.add_argument("--cols", choices=["backbone", "task", "metric"], default="task")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table; malformed records are listed on stderr, never dropped silently.

    Notes on the aggregation (duplicate runs dropped) go under the table for
    md/LaTeX/HTML and to stderr as well, so CSV/JSON output stays parseable
    while the reader is still told.
    """
    from harmony_bench.paths import default_results_dir
    from harmony_bench.results import iter_records
    from harmony_bench.tables import records_to_frame, render_summary, summarize, table_notes

    paths = args.paths or [default_results_dir()]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(map(str, missing))}")
    records, bad = iter_records(paths)
    for path, problems in bad:
        print(f"warning: skipped malformed record {path}: {'; '.join(problems)}", file=sys.stderr)
    summary = summarize(records_to_frame(records), args.metric)
    print(render_summary(summary, args.rows, args.cols, args.format))
    for note in table_notes(summary):
        print(f"note: {note}", file=sys.stderr)
    return 1 if bad else 0
