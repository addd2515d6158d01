"""Image–caption pairs, in the three layouts pretraining reads.

1. ``pairs/00000/000000000.jpg`` + ``.txt`` — img2dataset's extracted output,
   the layout the Harmony repo's CC3M loader scans;
2. ``shards/captions-000000.tar`` — a webdataset shard (``<key>.jpg``,
   ``<key>.txt``), what img2dataset writes by default;
3. ``captions.tsv`` — ``path<TAB>caption`` with paths relative to the root.

Captions describe the drawing (how many shapes, their colours, the
background), so an image–text model can learn the pairing.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.data.synth._writer import (
    JPEG_QUALITY,
    SynthSummary,
    count_files,
    manifest,
    resolve_sizes,
    save_jpeg,
    staging_dir,
    write_json,
)
from harmony_bench.data.synth.scene import BACKGROUNDS, COLORS, SHAPES, draw_scene

TEMPLATES = (
    "a photo of {objects} on a {background} background.",
    "{objects} drawn over a {background} texture.",
    "an image showing {objects}, {background} background.",
)
NUMBERS = {1: "one", 2: "two", 3: "three"}
DEFAULT_N, DEFAULT_SIZE = 32, 64
SHARD_NAME = "captions-000000.tar"


def describe(objects: list[tuple[str, str]], background: str, rng: np.random.Generator) -> str:
    """A caption that names every drawn object and the background."""
    phrases = [f"a {color} {shape}" for shape, color in objects]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    if len(phrases) > 1 and rng.random() < 0.5:
        listing = f"{NUMBERS[len(phrases)]} shapes: {listing}"
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(objects=listing, background=background)


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Add a file with fixed metadata, so the shard's bytes depend only on its content."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
        len(payload),
        0,
        0o644,
        0,
        0,
        "",
        "",
    )
    tar.addfile(info, io.BytesIO(payload))


def write(out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0) -> SynthSummary:
    """Write ``n`` image–caption pairs in all three layouts."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE))
    rng = np.random.default_rng(seed)
    shapes, colors = list(SHAPES), list(COLORS)
    rows = ["path\tcaption"]
    with staging_dir(out) as root:
        shard = root / "shards" / SHARD_NAME
        shard.parent.mkdir(parents=True)
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(n):
                count = int(rng.integers(1, 4))
                objects = [
                    (shapes[int(rng.integers(len(shapes)))], colors[int(rng.integers(len(colors)))])
                    for _ in range(count)
                ]
                style = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
                image, _ = draw_scene(rng, size, objects, per_side=2, style=style)
                caption = describe(objects, style, rng)
                key = f"{i:09d}"
                image_path = root / "pairs" / f"{i // 10000:05d}" / f"{key}.jpg"
                save_jpeg(image, image_path)
                image_path.with_suffix(".txt").write_text(caption, encoding="utf-8")
                rows.append(f"{image_path.relative_to(root).as_posix()}\t{caption}")
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
                add_member(tar, f"{key}.jpg", buffer.getvalue())
                add_member(tar, f"{key}.txt", caption.encode("utf-8"))
        (root / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        info = manifest("captions", seed, n, size, [f"{c} {s}" for s in shapes for c in colors], {"train": n})
        info["layouts"] = {"pairs": "pairs/", "webdataset": f"shards/{SHARD_NAME}", "tsv": "captions.tsv"}
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    notes = ["layouts: pairs/ (jpg+txt), shards/*.tar (webdataset), captions.tsv"]
    return SynthSummary("captions", out.expanduser().resolve(), info, files, notes)
