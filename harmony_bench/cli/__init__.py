"""The ``harmony-bench`` command line: ``main(argv)`` parses, dispatches, and maps errors to exit codes.

Each subcommand lives in its own module with a ``register(subparsers)``
function; the CLI only parses arguments and calls library functions, so
everything it does is also reachable from Python.  User mistakes (unknown
names, missing files, malformed records) print one clear ``error:`` line and
exit 2; a task that fails exits 1 after its failed record is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from harmony_bench import __version__
from harmony_bench.cli import (
    backbones_cmd,
    data_cmd,
    demo_cmd,
    leaderboard_cmd,
    list_cmd,
    pretrain_cmd,
    protocol_cmd,
    run_cmd,
    suite_cmd,
    table_cmd,
    validate_cmd,
)

SUBCOMMANDS = (
    list_cmd,
    run_cmd,
    protocol_cmd,
    data_cmd,
    table_cmd,
    validate_cmd,
    demo_cmd,
    backbones_cmd,
    suite_cmd,
    leaderboard_cmd,
    pretrain_cmd,
)

EPILOG = """examples:
  harmony-bench suite run demo                         # the built-in small default, CPU, < 5 min
  harmony-bench run --backbone harmony --task ade20k --preset smoke   # after a smoke pretrain (or make demo)
  harmony-bench run --backbone timm:vit_small_patch16_224.augreg_in21k --task imagenet-knn --data-root DIR
  harmony-bench list backbones                         # cards, aliases, your pretrained exports, name forms
  harmony-bench list tasks
  harmony-bench data synth --kind coco --out /tmp/coco-synth
  harmony-bench run --backbone harmony-vit-b16-cc3m --task ade20k --data-root /data/ADEChallengeData2016
  harmony-bench validate results/records/
  harmony-bench table results/records/ --format md
  harmony-bench suite report released                  # measured vs published, exit 1 outside tolerance
  harmony-bench leaderboard                            # regenerate results/LEADERBOARD.md + leaderboard.html
"""

USER_ERRORS: tuple[type[BaseException], ...] = (
    KeyError,
    LookupError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; subcommand modules add themselves."""
    parser = argparse.ArgumentParser(
        prog="harmony-bench",
        description="Evaluate pretrained vision backbones on ImageNet, ADE20K and COCO, the papers' way.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harmony-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``harmony-bench`` script; returns the exit code."""
    from harmony_bench.runner import RunFailed

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` or a pager that closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RunFailed as exc:
        print(f"error: {exc}\nfailed run recorded in {exc.record_path}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
