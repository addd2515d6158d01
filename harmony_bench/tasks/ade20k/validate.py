r"""ADE20K annotations checked once per copy of the dataset, before any model is built.

mmseg reads a label map as it is: with ``reduce_zero_label=True`` (the ADE20K protocol) raw 0 becomes
the ignore index 255, raw 1..150 become classes 0..149, and raw 255 becomes 254 and then 255 again
(mmseg 1.2.2 ``mmseg/datasets/transforms/loading.py`` ``LoadAnnotations._load_seg_map``), so 255 is
ignored too.  Any other value (151..254) becomes a class id of 150 or more: the loss fails on it
("Target 199 is out of bounds") after the run started, and ``IoUMetric`` silently drops it
(``torch.histc`` over 0..149), so a validation split of such labels ends ``completed`` with mIoU 0
and NaN accuracies.  A label map whose size differs from its image fails only when it is evaluated,
after all of training, without naming the file; a 16-bit or RGB PNG is read as something else.

:func:`check_dataset` looks at every pair once (sizes from the headers, every annotation decoded)
and refuses the split naming the first bad files.  A clean result is cached under a fingerprint of
the split's file list, sizes and modification times, so the next run on the same copy only
``stat``\\ s the files.  The cache is ``$HARMONY_BENCH_CACHE/data-checks/`` when that variable is
set, else ``<results dir>/.data-checks/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NUM_CLASSES = 150
IGNORE_RAW = (0, 255)  # 0 = "other" and 255: both end as mmseg's ignore index under reduce_zero_label
MODES = ("L", "P")  # 8-bit label maps; mmseg casts whatever it reads to uint8
SPLITS = ("training", "validation")
CHECK_VERSION = 1  # bump when the checks change, so old cache entries are not trusted
SHOW = 3  # bad files named per problem


class AnnotationError(ValueError):
    """A split's annotations cannot give a meaningful number; the message names the first bad files."""


@dataclass
class SplitReport:
    """What is wrong with one split (empty lists: nothing)."""

    split: str
    pairs: int = 0
    bad_values: list[tuple[str, list[int]]] = field(default_factory=list)
    bad_size: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    bad_mode: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every pair passed."""
        return not (self.bad_values or self.bad_size or self.bad_mode or self.unreadable)

    def problems(self) -> list[str]:
        """One sentence per kind of problem, naming the first few files."""
        out = []
        if self.bad_values:
            shown = ", ".join(f"{name} (values {_values(v)})" for name, v in self.bad_values[:SHOW])
            out.append(
                f"{len(self.bad_values)} label map(s) with values outside 0..{NUM_CLASSES} (255 = ignore is "
                f"allowed): {shown}{_more(self.bad_values)}"
            )
        if self.bad_size:
            shown = ", ".join(
                f"{name} ({a[0]}x{a[1]} vs image {i[0]}x{i[1]})" for name, a, i in self.bad_size[:SHOW]
            )
            out.append(
                f"{len(self.bad_size)} label map(s) of another size than their image: "
                f"{shown}{_more(self.bad_size)}"
            )
        if self.bad_mode:
            shown = ", ".join(f"{name} (mode {mode})" for name, mode in self.bad_mode[:SHOW])
            out.append(
                f"{len(self.bad_mode)} label map(s) that are not 8-bit single-channel PNGs (mode L or P): "
                f"{shown}{_more(self.bad_mode)}"
            )
        if self.unreadable:
            shown = ", ".join(f"{name} ({reason})" for name, reason in self.unreadable[:SHOW])
            out.append(f"{len(self.unreadable)} unreadable file(s): {shown}{_more(self.unreadable)}")
        return out


def _values(values: list[int]) -> str:
    return ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")


def _more(items: list) -> str:
    return f" and {len(items) - SHOW} more" if len(items) > SHOW else ""


def pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, annotation)`` paths of a split, by name (pairing was checked by ``resolve_root``)."""
    images = {p.stem: p for p in (root / "images" / split).glob("*.jpg")}
    labels = {p.stem: p for p in (root / "annotations" / split).glob("*.png")}
    return [(images[name], labels[name]) for name in sorted(images.keys() & labels.keys())]


def fingerprint(items: list[tuple[Path, Path]]) -> str:
    """sha256 of the file names, sizes and modification times (any change to the copy changes it)."""
    digest = hashlib.sha256(f"ade20k-annotations/{CHECK_VERSION}".encode())
    for image, label in items:
        for path in (image, label):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_pair(image: Path, label: Path) -> tuple[str, object] | None:
    """The problem with one pair (kind, detail), or None."""
    from PIL import Image

    try:
        with Image.open(image) as im:
            image_size = im.size
    except Exception as exc:  # PIL raises many kinds on bad files
        return "unreadable", f"{image.name}: {type(exc).__name__}"
    try:
        with Image.open(label) as lab:
            mode, label_size = lab.mode, lab.size
            if mode not in MODES:
                return "mode", mode
            if label_size != image_size:
                return "size", (label_size, image_size)
            counts = np.bincount(np.asarray(lab, dtype=np.uint8).ravel(), minlength=256)
    except Exception as exc:
        return "unreadable", f"{label.name}: {type(exc).__name__}"
    present = np.flatnonzero(counts)
    bad = [int(v) for v in present if v > NUM_CLASSES and v not in IGNORE_RAW]
    return ("values", bad) if bad else None


def check_split(root: Path, split: str, workers: int | None = None) -> SplitReport:
    """Check every pair of one split (threads: PIL decodes without holding the GIL)."""
    items = pairs(root, split)
    report = SplitReport(split=split, pairs=len(items))
    workers = workers or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda pair: _check_pair(*pair), items)
        for (_, label), problem in zip(items, results, strict=True):
            if problem is None:
                continue
            kind, detail = problem
            name = f"annotations/{split}/{label.name}"
            if kind == "values":
                report.bad_values.append((name, detail))  # type: ignore[arg-type]
            elif kind == "size":
                report.bad_size.append((name, *detail))  # type: ignore[misc]
            elif kind == "mode":
                report.bad_mode.append((name, str(detail)))
            else:
                report.unreadable.append((name, str(detail)))
    return report


def cache_dir(results_dir: Path) -> Path:
    """``$HARMONY_BENCH_CACHE/data-checks`` when set, else ``<results dir>/.data-checks``."""
    if os.environ.get("HARMONY_BENCH_CACHE"):
        return Path(os.environ["HARMONY_BENCH_CACHE"]).expanduser() / "data-checks"
    return Path(results_dir) / ".data-checks"


def check_dataset(root: Path, cache: Path | None) -> dict[str, str]:
    """Check both splits (or find them checked in ``cache``); return ``{split: fingerprint}``.

    Raises:
        AnnotationError: naming the split, the kind of problem and the first bad files.
    """
    from harmony_bench.atomic import atomic_write_json

    checked = {}
    for split in SPLITS:
        items = pairs(root, split)
        key = fingerprint(items)
        entry = cache / f"ade20k-{key[:32]}.json" if cache is not None else None
        if entry is not None and entry.is_file():
            checked[split] = key
            continue
        report = check_split(root, split)
        if not report.ok:
            raise AnnotationError(
                f"ade20k --data-root {root}: the {split} split cannot give a meaningful number: "
                + "; ".join(report.problems())
                + f". Labels must be 8-bit PNGs the size of their image, 0 = other, 1..{NUM_CLASSES} = "
                "classes (255 = ignore); fix or replace these files"
            )
        if entry is not None:
            try:
                atomic_write_json(
                    entry, {"root": str(root), "split": split, "pairs": report.pairs, "key": key}
                )
            except OSError as exc:  # a read-only cache only costs the next run the check again
                log.debug("could not cache the ADE20K check in %s: %s", entry, exc)
        log.info("ade20k %s: %d image/annotation pairs checked", split, report.pairs)
        checked[split] = key
    return checked
