"""``harmony-bench suite list|show|run|report``: backbone × task matrices from ``benchmarks/suites/``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harmony_bench.cli._help import add_command

EXAMPLES = """  harmony-bench suite list
  harmony-bench suite run demo                       # synthetic data, smoke presets, table + leaderboard
  harmony-bench suite show released --data imagenet=/data/imagenet
  harmony-bench suite run released --data imagenet=/data/imagenet --data ade20k=/data/ADEChallengeData2016
  harmony-bench suite run released --launcher slurm --slurm partition=gpu --slurm gpus_per_node=1
  harmony-bench suite report released               # measured vs published; exit 1 outside tolerance
"""


def _data(items: list[str] | None) -> dict[str, Path]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--data expects KEY=PATH (e.g. imagenet=/data/imagenet), got {item!r}")
        out[key] = Path(value).expanduser()
    return out


def _slurm_options(items: list[str] | None) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {"timeout_min": 24 * 60, "nodes": 1, "tasks_per_node": 1}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slurm expects KEY=VALUE (submitit parameter), got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def register(subparsers: Any) -> None:
    """Add ``suite`` and its actions."""
    parser = add_command(subparsers, "suite", "Run and report suites of backbone × task cells.", EXAMPLES)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the suites in benchmarks/suites/").set_defaults(func=run_list)
    for name, func, text in (
        ("show", run_show, "cells with their status and cost"),
        ("run", run_run, "run every cell without a record (resumes)"),
        ("report", run_report, "measured vs published with deltas; exit 1 outside tolerance"),
    ):
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument("suite", help="suite name or path to a suite YAML")
        sub.add_argument("--output", type=Path, help="records directory (default: the suite's)")
        sub.set_defaults(func=func)
        if name == "run":
            sub.add_argument("--data", action="append", metavar="KEY=PATH", help="dataset root; repeatable")
            sub.add_argument("--cell", action="append", help="run only this cell id (repeatable)")
            sub.add_argument("--launcher", choices=["local", "slurm"], default="local")
            sub.add_argument(
                "--slurm",
                action="append",
                metavar="KEY=VALUE",
                help="submitit parameter (repeatable); steps become jobs the cells depend on (afterok)",
            )
            sub.add_argument("--no-progress", action="store_true", help="no progress bar")
            sub.add_argument("--no-leaderboard", action="store_true", help="skip table and leaderboard files")
        if name == "report":
            sub.add_argument("--require-all", action="store_true", help="missing cells fail too")


def run_list(args: argparse.Namespace) -> int:
    """One line per suite."""
    from harmony_bench.suites import load_suite, suite_files

    for name in suite_files():
        suite = load_suite(name)
        kind = "synthetic" if suite.synthetic else "real data"
        print(f"{name:<16} {len(suite.cells):>4} cells  {kind:<10} {suite.description}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """The cells, their status and cost from the state file."""
    from harmony_bench.suites import load_suite
    from harmony_bench.suites.jobs import collect_job_results
    from harmony_bench.suites.state import cell_status, read_state, suite_paths

    suite = load_suite(args.suite, args.output)
    paths = suite_paths(suite)
    state = read_state(paths.state)
    collect_job_results(state, paths)  # finished Slurm jobs: shown with their cost, the file is left alone
    print(f"suite {suite.name}: {suite.description}\noutput: {suite.output}")
    for cell in suite.cells:
        entry = state["cells"].get(cell.id, {})
        job = f" (job {entry['job_id']})" if entry.get("job_id") else ""
        print(f"  {cell_status(state, cell.id):<8} {cell.id:<60} {cell_cost(entry)}{job}")
    return 0


def cell_cost(entry: dict[str, Any]) -> str:
    """``12.3 s, 1 GPU, 0.003 GPU-h, peak 850 MiB RSS``, or nothing before the cell ran."""
    if "wall_s" not in entry:
        return ""
    text = f"{entry['wall_s']:.1f} s, {entry.get('gpus', 0)} GPU, {entry.get('gpu_hours', 0):.3f} GPU-h"
    return text + f", peak {entry.get('peak_rss_mb', 0)} MiB RSS"


def run_run(args: argparse.Namespace) -> int:
    """Run (or submit) the missing cells, then write the table and, for synthetic suites, the leaderboard."""
    from harmony_bench.leaderboard import write_suite_outputs
    from harmony_bench.suites import load_suite
    from harmony_bench.suites.local import run_suite
    from harmony_bench.suites.state import cell_status

    suite = load_suite(args.suite, args.output)
    cells = [suite.cell(c) for c in args.cell] if args.cell else None
    if args.launcher == "slurm":
        from harmony_bench.suites.slurm import submit_suite

        submit_suite(suite, _slurm_options(args.slurm), _data(args.data), cells)
        print(
            "submitted; `suite show` follows the jobs (status and cost); `suite run` again reruns failed ones"
        )
        return 0
    state = run_suite(suite, _data(args.data), cells, progress=not args.no_progress)
    if not args.no_leaderboard:
        print(write_suite_outputs(suite))
    statuses = {c.id: cell_status(state, c.id) for c in (cells or suite.cells)}
    queued = [cell for cell, status in statuses.items() if status == "running"]  # Slurm jobs, another run
    if queued:
        print(
            f"{len(queued)} cells still running elsewhere (Slurm jobs or another suite run): "
            + ", ".join(queued)
        )
    failed = [cell for cell, status in statuses.items() if status not in ("done", "running")]
    if failed:
        print(
            f"error: {len(failed)} cells failed: {', '.join(failed)} (see `suite show {suite.name}`)",
            file=sys.stderr,
        )
    return 1 if failed else 0


def run_report(args: argparse.Namespace) -> int:
    """Measured vs published per expectation; 1 when a cell is outside tolerance (or missing, if required)."""
    from harmony_bench.results import iter_records
    from harmony_bench.suites import load_suite
    from harmony_bench.suites.checks import render_checks, suite_checks

    suite = load_suite(args.suite, args.output)
    records, bad = iter_records([suite.records]) if suite.records.exists() else ([], [])
    for path, problems in bad:
        print(f"warning: skipped malformed record {path}: {'; '.join(problems)}", file=sys.stderr)
    checks = suite_checks(suite, records)
    if not checks:  # nothing published to compare with: show what was measured
        from harmony_bench.leaderboard.board import HEADLINE_METRICS
        from harmony_bench.tables import build_table

        print(f"suite {suite.name} declares no published values to compare with; measured so far:")
        print(build_table(records, HEADLINE_METRICS))
        return 0
    print(render_checks(checks))
    counts = {v: sum(c.verdict == v for c in checks) for v in ("ok", "outside", "missing", "synthetic")}
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    failing = counts["outside"] + (counts["missing"] if args.require_all else 0)
    return 1 if failing else 0
