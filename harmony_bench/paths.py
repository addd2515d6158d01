"""Where harmony-bench finds its data files (backbone cards, task protocols, results).

Cards and protocols are data that live in the source checkout (``backbones/``,
``benchmarks/``), like mmseg's ``configs/``.  Users add their own directories
through environment variables instead of editing the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _dirs_from_env(variable: str) -> list[Path]:
    value = os.environ.get(variable, "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def backbone_card_dirs() -> list[Path]:
    """Directories scanned for backbone cards: ``$HARMONY_BENCH_BACKBONES`` first, then ``backbones/``."""
    return [*_dirs_from_env("HARMONY_BENCH_BACKBONES"), REPO_ROOT / "backbones"]


# Folders of benchmarks/ whose *.yaml files are task protocols (suites/ and speed/ are not).
TASK_GROUPS = ("imagenet", "ade20k", "coco", "retrieval")


def task_dirs() -> list[Path]:
    """Task protocol directories: ``$HARMONY_BENCH_TASKS`` first, then ``benchmarks/<group>/``."""
    return [
        *_dirs_from_env("HARMONY_BENCH_TASKS"),
        *(REPO_ROOT / "benchmarks" / group for group in TASK_GROUPS),
    ]


def default_results_dir() -> Path:
    """Where ``run`` writes records unless ``--output`` says otherwise."""
    return Path(os.environ.get("HARMONY_BENCH_RESULTS", REPO_ROOT / "results" / "records"))
