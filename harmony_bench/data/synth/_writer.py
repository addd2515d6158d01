"""Shared plumbing for synthetic writers: atomic output directory, deterministic files, manifest."""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

GENERATOR_VERSION = 1
JPEG_QUALITY = 92
# Below this, shapes shrink to a few pixels and COCO polygons can rasterise to zero area.
MIN_SIZE = 16


@dataclass
class SynthSummary:
    """What a synthetic writer produced; ``root`` is what a task takes as ``--data-root``."""

    kind: str
    root: Path
    manifest: dict[str, Any]
    files: int = 0
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A few human-readable lines for the CLI."""
        splits = ", ".join(f"{name}: {count} images" for name, count in self.manifest["splits"].items())
        classes = self.manifest["classes"]
        shown = ", ".join(classes[:6]) + (f", … ({len(classes)} in all)" if len(classes) > 6 else "")
        lines = [
            f"synthetic {self.kind} dataset (seed {self.manifest['seed']}, {self.manifest['size']} px)",
            f"  root:    {self.root}   (pass as --data-root)",
            f"  splits:  {splits}",
            f"  classes: {shown}",
            f"  files:   {self.files}",
            *[f"  {note}" for note in self.notes],
            "  synthetic: for smoke tests only, never a benchmark number",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, including the manifest."""
        return {
            "kind": self.kind,
            "root": str(self.root),
            "files": self.files,
            "notes": list(self.notes),
            "manifest": self.manifest,
        }


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out`` that becomes ``out`` only if the writer finishes.

    A crash or Ctrl-C leaves no half-written dataset behind, and an existing
    non-empty ``out`` is refused rather than mixed with new files.
    """
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass a new --out or delete it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Save with fixed settings so the same pixels give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False)


def save_png(image: Image.Image, path: Path) -> None:
    """Save a label map (mode L) losslessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False)


def write_json(payload: Any, path: Path) -> None:
    """Stable JSON: sorted keys, no timestamps, trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def manifest(
    kind: str, seed: int, n: int, size: int, classes: list[str], splits: dict[str, int]
) -> dict[str, Any]:
    """The identity later code uses to mark records as synthetic-data runs."""
    return {
        "synthetic": True,
        "kind": kind,
        "seed": seed,
        "n": n,
        "size": size,
        "generator_version": GENERATOR_VERSION,
        "classes": classes,
        "splits": splits,
    }


def count_files(root: Path) -> int:
    """Number of regular files below ``root``."""
    return sum(1 for p in root.rglob("*") if p.is_file())


def check_positive(name: str, value: object, minimum: int = 1) -> int:
    """Reject anything but an integer >= ``minimum``, with a message naming the CLI option.

    ``None`` means "use the default" and is resolved by the caller *before* this
    check, so ``0`` is an error rather than silently becoming the default.  Bools
    and floats are refused too: ``n=True`` or ``n=2.5`` is a caller's bug.
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    if value < max(1, minimum):
        need = "a positive integer" if minimum <= 1 else f"an integer >= {minimum}"
        raise ValueError(f"--{name} must be {need}, got {value}")
    return int(value)


def resolve_sizes(
    n: int | None, size: int | None, defaults: tuple[int, int], min_size: int = MIN_SIZE
) -> tuple[int, int]:
    """Apply a kind's defaults to ``None`` only, then validate ``n`` and ``size``."""
    default_n, default_size = defaults
    return (
        check_positive("n", default_n if n is None else n),
        check_positive("size", default_size if size is None else size, min_size),
    )
