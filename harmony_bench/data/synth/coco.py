"""COCO-2017-layout synthetic data: ``{train,val}2017/*.jpg`` and ``annotations/instances_*.json``.

Several shapes per image, each a COCO instance whose category is its shape.
Segmentations are the exact polygons the shapes were drawn with; ``area`` is
computed by pycocotools from that polygon (what COCOeval uses) and ``bbox`` is
the polygon's extent, so annotations agree with pixels by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

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
from harmony_bench.data.synth.scene import DrawnObject, draw_scene

# category id -> (shape, fixed colour); ids start at 1 as in COCO.
CATEGORIES: dict[int, tuple[str, str]] = {
    1: ("circle", "red"),
    2: ("square", "green"),
    3: ("triangle", "blue"),
    4: ("star", "yellow"),
}
DEFAULT_N, DEFAULT_SIZE = 16, 128
# Four objects per side-length of 32 px are still >= ~15 px² each; smaller images give near-empty masks.
MIN_SIZE = 32
SPLITS = ("train2017", "val2017")


def annotation(obj: DrawnObject, ann_id: int, image_id: int, category_id: int, size: int) -> dict[str, Any]:
    """One COCO instance annotation from a drawn polygon."""
    flat = [coordinate for point in obj.polygon for coordinate in point]
    rle = mask_utils.merge(mask_utils.frPyObjects([flat], size, size))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [flat],
        "area": float(mask_utils.area(rle)),
        "bbox": [round(v, 2) for v in obj.bbox],
        "iscrowd": 0,
    }


def write_split(
    rng: np.random.Generator, root: Path, split: str, count: int, size: int, first_ids: tuple[int, int]
) -> dict[str, Any]:
    """Draw ``count`` images of one split and return its COCO json payload.

    ``first_ids`` are the first image and annotation ids: ids continue across
    splits (as in real COCO, where train and val ids never collide), so merged
    or cached annotations can never confuse two objects.
    """
    first_id, first_ann_id = first_ids
    by_shape = {shape: (cat_id, color) for cat_id, (shape, color) in CATEGORIES.items()}
    images, annotations = [], []
    for offset in range(count):
        image_id = first_id + offset
        shapes = list(by_shape)
        picks = [shapes[int(i)] for i in rng.choice(len(shapes), size=int(rng.integers(1, 4)), replace=False)]
        image, drawn = draw_scene(rng, size, [(s, by_shape[s][1]) for s in picks], per_side=2)
        file_name = f"{image_id:012d}.jpg"
        save_jpeg(image, root / split / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size, "license": 1})
        for obj in drawn:
            ann_id = first_ann_id + len(annotations)
            annotations.append(annotation(obj, ann_id, image_id, by_shape[obj.shape][0], size))
    return {
        "info": {"description": "harmony-bench synthetic COCO-layout data (not a benchmark)", "version": "1"},
        "licenses": [{"id": 1, "name": "CC0-1.0", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": shape, "supercategory": "shape"} for i, (shape, _) in CATEGORIES.items()
        ],
    }


def write(out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0) -> SynthSummary:
    """Write ``n`` training and ``max(1, n // 4)`` validation images with instance annotations."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE), MIN_SIZE)
    counts = {"train2017": n, "val2017": max(1, n // 4)}
    rng = np.random.default_rng(seed)
    with staging_dir(out) as root:
        first_ids = (1, 1)
        for split in SPLITS:
            payload = write_split(rng, root, split, counts[split], size, first_ids)
            write_json(payload, root / "annotations" / f"instances_{split}.json")
            first_ids = (first_ids[0] + len(payload["images"]), first_ids[1] + len(payload["annotations"]))
        info = manifest("coco", seed, n, size, [shape for shape, _ in CATEGORIES.values()], counts)
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    return SynthSummary(
        "coco", out.expanduser().resolve(), info, files, ["annotations: polygons, 1-3 objects/image"]
    )
