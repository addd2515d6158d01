"""Shared argparse helpers: every subcommand gets an epilog of examples."""

from __future__ import annotations

import argparse
from typing import Any


def add_command(subparsers: Any, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` ends with worked examples."""
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
