"""Shared argparse helpers: every subcommand gets an epilog of examples; ``KEY=VALUE`` options parse one way.

The one module the subcommands share (they never import each other).
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def add_command(subparsers: Any, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` ends with worked examples."""
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``a.b=1`` pairs into a nested mapping; values are parsed as YAML scalars.

    ``+a.b=1`` adds a key the protocol does not have (every part is marked ``+``, see
    ``harmony_bench.protocol_schema``); without the ``+`` an unknown key is refused when the config resolves.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, value = split_pair(pair, "--set")
        added = key.startswith("+")
        parts = key.lstrip("+").split(".")
        if added:
            parts = [f"+{part}" for part in parts]
        node = overrides
        *parents, leaf = parts
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {pair}: {key.rsplit('.', 1)[0]} was already given a value")
        node[leaf] = value
    return overrides


def split_pair(pair: str, flag: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → ``(KEY, VALUE parsed as YAML)``."""
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip("+"):
        raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ValueError(
            f"{flag} {pair}: the value {raw!r} is not valid YAML ({reason}); quote text, close brackets, "
            "e.g. KEY=[1, 2] or KEY='a: b'"
        ) from None
