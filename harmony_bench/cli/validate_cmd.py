"""``harmony-bench validate``: check result records against the schema."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench validate results/records/
  harmony-bench validate run1.json run2.json
"""


def register(subparsers: Any) -> None:
    """Add the ``validate`` subcommand."""
    parser = add_command(subparsers, "validate", "Validate result records (files or directories).", EXAMPLES)
    parser.add_argument("paths", nargs="+", type=Path, metavar="RESULT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per file; exit 1 when any record is malformed."""
    from harmony_bench.results import iter_records

    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(map(str, missing))}")
    records, bad = iter_records(args.paths)
    for record in records:
        print(f"ok      {record.get('_path', record['record_id'])}")
    for path, problems in bad:
        print(f"invalid {path}")
        for problem in problems:
            print(f"        - {problem}")
    print(f"{len(records)} valid, {len(bad)} invalid")
    return 1 if bad or not records else 0
