"""Image–caption retrieval sets in COCO's and Flickr30k's layouts, with captions that name what is drawn.

Scenes and captions come from the same generator as the pretraining captions (``captions.describe``:
one to three coloured shapes on a textured background), so a model pretrained on ``data synth --kind
captions`` can match them and its smoke recall rises above a random-init model's.  Each image gets
five captions, each listing the objects in a different order with a different template, as five
annotators would; every seventh COCO image gets six (COCO's val2017 has images with six or seven).

``coco-captions`` writes both COCO layouts the retrieval task reads:

- ``val2017/<id:012d>.jpg`` + ``annotations/captions_val2017.json`` (the official 2017 captions file,
  what Harmony's ``eval/retrieval.py`` reads), annotations in shuffled order as in the real file;
- ``val2014/COCO_val2014_<id:012d>.jpg`` + ``dataset_coco.json`` (Karpathy's split file): the same
  images as ``split: test`` plus ``max(1, n // 4)`` others as ``split: val``, interleaved.

``flickr30k`` writes the official archives' layout plus Karpathy's file:
``flickr30k-images/<id>.jpg``, ``results_20130124.token`` (``<file>#<i><TAB><caption>``, every image)
and ``dataset_flickr30k.json`` (``n`` images ``test`` interleaved with ``max(1, n // 4)`` ``train``, then
``max(1, n // 4)`` ``val``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from harmony_bench.data.synth.captions import describe
from harmony_bench.data.synth.scene import BACKGROUNDS, COLORS, SHAPES, draw_scene

DEFAULT_N, DEFAULT_SIZE = 64, 64  # 64 queries: a tiny pretrained model's gain is above the noise
CAPTIONS_PER_IMAGE = 5
FIRST_COCO_ID = 139  # the first image id of the real val2017, so ids look like COCO's
FIRST_FLICKR_ID = 1000092795  # the first file name of the real Flickr30k


def scene(rng: np.random.Generator, size: int, n_captions: int = CAPTIONS_PER_IMAGE) -> tuple[Any, list[str]]:
    """One drawn image and its captions, each a different order and wording of the same content."""
    shapes, colors = list(SHAPES), list(COLORS)
    count = int(rng.integers(1, 4))
    objects = [
        (shapes[int(rng.integers(len(shapes)))], colors[int(rng.integers(len(colors)))]) for _ in range(count)
    ]
    style = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    image, _ = draw_scene(rng, size, objects, per_side=2, style=style)
    captions = [
        describe([objects[int(i)] for i in rng.permutation(count)], style, rng) for _ in range(n_captions)
    ]
    return image, captions


def karpathy_entry(
    filename: str, captions: list[str], split: str, imgid: int, first_sentid: int, **extra: Any
) -> dict[str, Any]:
    """One ``images`` entry of Karpathy's ``dataset_*.json`` (raw caption plus its lower-case tokens)."""
    sentids = list(range(first_sentid, first_sentid + len(captions)))
    sentences = [
        {
            "raw": raw,
            "tokens": raw.lower().rstrip(".").replace(",", "").split(),
            "imgid": imgid,
            "sentid": sid,
        }
        for raw, sid in zip(captions, sentids, strict=True)
    ]
    return {
        **extra,
        "filename": filename,
        "imgid": imgid,
        "split": split,
        "sentences": sentences,
        "sentids": sentids,
    }


def interleaved_splits(n_test: int, n_other: int, other: str) -> list[str]:
    """``test`` entries with one ``other`` after every fourth, as splits mix in Karpathy's files."""
    splits: list[str] = []
    while n_test or n_other:
        take = min(4, n_test)
        splits += ["test"] * take
        n_test -= take
        if n_other:
            splits.append(other)
            n_other -= 1
    return splits


def write_coco_captions(
    out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0
) -> SynthSummary:
    """``n`` val2017 images with captions_val2017.json, and Karpathy's dataset_coco.json over val2014."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE))
    rng = np.random.default_rng(seed)
    splits = interleaved_splits(n, max(1, n // 4), "val")
    drawn = [scene(rng, size, 6 if index % 7 == 0 else CAPTIONS_PER_IMAGE) for index in range(len(splits))]
    ids = [FIRST_COCO_ID + index for index in range(len(splits))]
    test = [i for i, split in enumerate(splits) if split == "test"]
    annotations = [{"image_id": ids[i], "caption": caption} for i in test for caption in drawn[i][1]]
    order = rng.permutation(len(annotations))  # the real file is not grouped by image
    annotations = [{"id": ann_id, **annotations[int(j)]} for ann_id, j in enumerate(order, start=1)]
    in_file_order: dict[int, list[str]] = {}
    for ann in annotations:
        in_file_order.setdefault(ann["image_id"], []).append(ann["caption"])
    with staging_dir(out) as root:
        karpathy, images, sentid = [], [], 0
        for index, ((image, captions), split) in enumerate(zip(drawn, splits, strict=True)):
            name_2014 = f"COCO_val2014_{ids[index]:012d}.jpg"
            save_jpeg(image, root / "val2014" / name_2014)
            captions = in_file_order.get(ids[index], captions)  # Karpathy's sentences follow the COCO file
            karpathy.append(
                karpathy_entry(
                    name_2014, captions, split, index, sentid, filepath="val2014", cocoid=ids[index]
                )
            )
            sentid += len(captions)
            if split == "test":
                file_name = f"{ids[index]:012d}.jpg"
                save_jpeg(image, root / "val2017" / file_name)
                images.append(
                    {"id": ids[index], "file_name": file_name, "width": size, "height": size, "license": 1}
                )
        payload = {
            "info": {
                "description": "harmony-bench synthetic COCO captions (not a benchmark)",
                "version": "1",
            },
            "licenses": [{"id": 1, "name": "CC0-1.0", "url": ""}],
            "images": images,
            "annotations": annotations,
        }
        write_json(payload, root / "annotations" / "captions_val2017.json")
        write_json({"images": karpathy, "dataset": "coco"}, root / "dataset_coco.json")
        counts = {"val2017": len(images), "karpathy-test": len(test), "karpathy-val": len(splits) - len(test)}
        info = manifest("coco-captions", seed, n, size, _classes(), counts)
        info["captions"] = len(annotations)
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    notes = [
        "layouts: val2017/ + annotations/captions_val2017.json; val2014/ + dataset_coco.json (Karpathy)",
        f"{len(annotations)} captions of the val2017/test images (5 per image, 6 for every 7th)",
    ]
    return SynthSummary("coco-captions", out.expanduser().resolve(), info, files, notes)


def write_flickr30k(
    out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0
) -> SynthSummary:
    """``n`` test images plus ``n // 4`` train and val ones in the Flickr30k archive layout."""
    n, size = resolve_sizes(n, size, (DEFAULT_N, DEFAULT_SIZE))
    extra = max(1, n // 4)
    rng = np.random.default_rng(seed)
    splits = interleaved_splits(n, extra, "train") + ["val"] * extra
    with staging_dir(out) as root:
        lines, karpathy = [], []
        for index, split in enumerate(splits):
            image, captions = scene(rng, size)
            filename = f"{FIRST_FLICKR_ID + 1000 * index}.jpg"
            save_jpeg(image, root / "flickr30k-images" / filename)
            lines += [f"{filename}#{i}\t{caption}" for i, caption in enumerate(captions)]
            karpathy.append(karpathy_entry(filename, captions, split, index, CAPTIONS_PER_IMAGE * index))
        (root / "results_20130124.token").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json({"images": karpathy, "dataset": "flickr30k"}, root / "dataset_flickr30k.json")
        counts = {"all": len(splits), "karpathy-test": n, "karpathy-train": extra, "karpathy-val": extra}
        info = manifest("flickr30k", seed, n, size, _classes(), counts)
        info["captions"] = len(lines)
        write_json(info, root / MANIFEST_NAME)
        files = count_files(root)
    notes = ["layout: flickr30k-images/, results_20130124.token, dataset_flickr30k.json (Karpathy)"]
    return SynthSummary("flickr30k", out.expanduser().resolve(), info, files, notes)


def _classes() -> list[str]:
    return [f"{color} {shape}" for shape in SHAPES for color in COLORS]
