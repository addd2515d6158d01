"""The record's ``dataset`` block and the synthetic-data manifest: one home for both.

Every task describes its data the same way (name, resolved root, whether it is synthetic, the
manifest; ADE20K and COCO add their split sizes), so a table can tell synthetic smoke numbers from
benchmark numbers whatever task made them.  Synthetic data (``harmony-bench data synth``) is
recognised by :data:`MANIFEST_NAME` at its root; the writers, the suites and the runner read the name
from here.  A leaf module: no torch, no PIL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST_NAME = "harmony_bench_synth.json"


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The synthetic-data manifest of ``root``, or ``None`` for real data."""
    path = Path(root) / MANIFEST_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def dataset_block(
    root: Path,
    name: str,
    synthetic_name: str,
    *,
    manifest_in_parent: bool = False,
    splits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result record's ``dataset`` block for the data at ``root``.

    Args:
        root: The dataset root the task read.
        name: The dataset's name for real data (``imagenet-1k``, ``coco-2017``).
        synthetic_name: Its name when ``root`` holds synthetic data.
        manifest_in_parent: Look for the manifest one level up too (ADE20K's synthetic root is
            ``<out>/ADEChallengeData2016`` under the manifest's folder).
        splits: Split sizes to record (ADE20K, COCO); left out when None.
    """
    root = Path(root)
    manifest = read_manifest(root) or (read_manifest(root.parent) if manifest_in_parent else None)
    block: dict[str, Any] = {
        "name": synthetic_name if manifest else name,
        "root": str(root.expanduser().resolve()),
        "synthetic": manifest is not None,
    }
    if splits is not None:
        block["splits"] = splits
    block["manifest"] = manifest
    return block


def unread_dataset_block(name: str, root: Path | None) -> dict[str, Any]:
    """The block of a run that failed before its task could describe the data (no manifest read)."""
    return {
        "name": name,
        "root": str(root) if root else None,
        "synthetic": bool(root and (Path(root) / MANIFEST_NAME).is_file()),
        "manifest": None,
    }
