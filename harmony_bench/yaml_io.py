"""Reading the YAML data files (cards, protocols) with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DataFileError(ValueError):
    """A card or protocol file is malformed; the message names the file and the fix."""


def load_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML file whose top level must be a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def check_keys(path: Path, data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    """Fail on missing or unknown keys, so a typo in a card is an error, not a silent default."""
    missing = sorted(required - data.keys())
    unknown = sorted(data.keys() - required - optional)
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: {sorted(required | optional)})")
    if problems:
        raise DataFileError(f"{path}: " + "; ".join(problems))
