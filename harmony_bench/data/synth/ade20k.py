"""ADE20K-layout synthetic data: ``ADEChallengeData2016/{images,annotations}/{training,validation}``.

Label maps are single-channel PNGs in ADE20K's encoding: 0 = "other"/ignore
(mmseg's ``reduce_zero_label`` turns it into 255), 1..150 = ADE20K class ids.
The upper part of each image is textured "sky" (3), the lower "floor" (4), a
2-pixel frame is 0 to exercise the ignore index, and each shape is drawn with
its own ADE20K class id, so every label is determined by what is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.data.synth._writer import (
    SynthSummary,
    count_files,
    manifest,
    resolve_sizes,
    save_jpeg,
    save_png,
    staging_dir,
    write_json,
)
from harmony_bench.data.synth.scene import background, draw_scene, rasterize

# Shape -> (ADE20K class id, that id's name in ADE20K's 150-class list, fixed colour).  Ids are the
# 1-based PNG values; tests check the names against mmseg's ADE20KDataset.METAINFO.
SHAPE_CLASSES: dict[str, tuple[int, str, str]] = {
    "circle": (20, "chair", "red"),
    "square": (21, "car", "green"),
    "triangle": (24, "sofa", "blue"),
    "hexagon": (25, "shelf", "yellow"),
    "star": (37, "lamp", "magenta"),
}
REGIONS = {"sky": 3, "floor": 4}
IGNORE, FRAME = 0, 2
DEFAULT_N, DEFAULT_SIZE = 16, 128
SPLITS = {"training": "train", "validation": "val"}


def draw_sample(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image]:
    """One image and its label map."""
    shapes = list(SHAPE_CLASSES)
    count = int(rng.integers(1, 4))
    picks = [shapes[int(i)] for i in rng.choice(len(shapes), size=count, replace=False)]
    image, drawn = draw_scene(rng, size, [(s, SHAPE_CLASSES[s][2]) for s in picks], per_side=2, style="noise")
    horizon = int(size * rng.uniform(0.35, 0.6))
    pixels = np.asarray(image).copy()
    sky = background(rng, size, "stripes")
    sky[..., 2] = np.clip(sky[..., 2].astype(int) + 60, 0, 255)  # bluish, unlike any shape colour
    labels = np.full((size, size), REGIONS["floor"], dtype=np.uint8)
    labels[:horizon] = REGIONS["sky"]
    objects = np.zeros((size, size), dtype=bool)
    for obj in drawn:
        mask = rasterize(obj.polygon, size)
        labels[mask] = SHAPE_CLASSES[obj.shape][0]
        objects |= mask
    upper = np.zeros((size, size), dtype=bool)
    upper[:horizon] = True
    pixels[upper & ~objects] = sky[upper & ~objects]
    labels[:FRAME], labels[-FRAME:], labels[:, :FRAME], labels[:, -FRAME:] = IGNORE, IGNORE, IGNORE, IGNORE
    return Image.fromarray(pixels), Image.fromarray(labels, mode="L")


def write(out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0) -> SynthSummary:
    """Write ``n`` training and ``max(1, n // 4)`` validation image/label pairs."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE))
    counts = {"training": n, "validation": max(1, n // 4)}
    rng = np.random.default_rng(seed)
    names = [f"{ade_id} {name} ({shape})" for shape, (ade_id, name, _) in SHAPE_CLASSES.items()]
    names = [f"{REGIONS['sky']} sky", f"{REGIONS['floor']} floor", *names]
    with staging_dir(out) as staging:
        root = staging / "ADEChallengeData2016"
        for split, count in counts.items():
            for i in range(1, count + 1):
                image, labels = draw_sample(rng, size)
                stem = f"ADE_{SPLITS[split]}_{i:08d}"
                save_jpeg(image, root / "images" / split / f"{stem}.jpg")
                save_png(labels, root / "annotations" / split / f"{stem}.png")
        info = manifest("ade20k", seed, n, size, names, counts)
        info["label_encoding"] = "0 = ignore/other, 1..150 = ADE20K class ids (mmseg reduce_zero_label=True)"
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    final_root = out.expanduser().resolve() / "ADEChallengeData2016"
    return SynthSummary("ade20k", final_root, info, files, ["label maps: 0 = ignore, ids 1..150 as ADE20K"])
