"""ImageNet-layout synthetic data: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (ImageFolder).

One large shape per image; the class is the (shape, colour) pair.  Folder names
have the WordNet-id shape (``n`` + 8 digits) but start at ``n90000000``, far
from real ids, so they can never be confused with real ImageNet classes; the
human-readable names are in ``classnames.txt`` and the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.data.synth._writer import (
    SynthSummary,
    count_files,
    manifest,
    resolve_sizes,
    save_jpeg,
    staging_dir,
    write_json,
)
from harmony_bench.data.synth.scene import draw_scene

CLASS_TABLE: list[tuple[str, str]] = [
    ("circle", "red"),
    ("square", "green"),
    ("triangle", "blue"),
    ("diamond", "yellow"),
    ("hexagon", "magenta"),
    ("star", "cyan"),
    ("cross", "red"),
    ("circle", "blue"),
    ("square", "yellow"),
    ("triangle", "magenta"),
]
DEFAULT_N, DEFAULT_SIZE = 80, 64


def wnid(index: int) -> str:
    """Synthetic WordNet-shaped id for class ``index``."""
    return f"n{90000000 + index:08d}"


def images_per_class(n: int, classes: int) -> dict[str, list[int]]:
    """Train and val image counts per class: exactly ``n`` train images, val about a quarter.

    The first ``n % classes`` classes get one extra training image, so ``--n``
    is honoured exactly; val gets at least one image per class so every class
    is evaluated.
    """
    base, extra = divmod(n, classes)
    return {
        "train": [base + (1 if c < extra else 0) for c in range(classes)],
        "val": [max(1, base // 4)] * classes,
    }


def write(out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0) -> SynthSummary:
    """Write ``n`` training images over up to 10 classes and about a quarter as many for val."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE))
    classes = CLASS_TABLE[: min(len(CLASS_TABLE), n)]
    counts = images_per_class(n, len(classes))
    names = [f"{color} {shape}" for shape, color in classes]
    rng = np.random.default_rng(seed)
    with staging_dir(out) as root:
        for split, per_class in counts.items():
            for index, (shape, color) in enumerate(classes):
                for i in range(per_class[index]):
                    image, _ = draw_scene(rng, size, [(shape, color)], per_side=1)
                    save_jpeg(image, root / split / wnid(index) / f"{wnid(index)}_{i:05d}.JPEG")
        (root / "classnames.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        splits = {split: sum(per_class) for split, per_class in counts.items()}
        info = manifest("imagenet", seed, n, size, names, splits)
        info["wnids"] = [wnid(i) for i in range(len(classes))]
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    return SynthSummary("imagenet", out.expanduser().resolve(), info, files)
