"""Synthetic datasets written once per user: what ``run --preset smoke`` reads without ``--data-root``.

A smoke run needs data in the benchmark's layout, and nothing else: when the user gives no
``--data-root``, the task's ``dataset.synth_kind`` is written (default size, seed 0) under
``<backbone store home>/synth/<kind>-g<generator version>-seed0`` the first time and read from there
afterwards.  The writers stage into a temporary folder and rename it into place, so two runs starting
together never see a half-written dataset; the generator version in the folder name means a changed
generator writes a fresh copy instead of reusing an old one.
"""

from __future__ import annotations

from pathlib import Path

from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.data.synth._writer import GENERATOR_VERSION


def cached_root(kind: str) -> Path:
    """The folder a kind's cached dataset lives in (it may not exist yet)."""
    from harmony_bench.store import synth_dir

    return synth_dir() / f"{kind}-g{GENERATOR_VERSION}-seed0"


def _data_root(folder: Path) -> Path | None:
    manifests = sorted(folder.rglob(MANIFEST_NAME)) if folder.is_dir() else []
    return manifests[0].parent if manifests else None


def synthetic_data_root(kind: str) -> tuple[Path, bool]:
    """``(data root, written now)`` of the cached synthetic ``kind`` dataset, writing it the first time."""
    from harmony_bench.data.synth import synthesize

    folder = cached_root(kind)
    existing = _data_root(folder)
    if existing is not None:
        return existing, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        return synthesize(kind, folder).root, True
    except (OSError, ValueError):  # another process finished it first (the rename found it there)
        existing = _data_root(folder)
        if existing is None:
            raise
        return existing, False
