"""Checks a COCO root before any model is built: files present, json sound, category ids consistent.

mmdet reads whatever json it is given and fails deep inside training (or, worse, trains on nothing
when every image is filtered out).  These checks turn the usual mistakes — a missing split, a json
that is not COCO, annotations naming categories the file does not declare, a split with no
annotations — into one message that says what is wrong and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREPARE = (
    "download COCO 2017 (train2017.zip, val2017.zip, annotations_trainval2017.zip) and unzip them into one "
    "folder, or write a small synthetic copy with `harmony-bench data synth --kind coco --out DIR`; "
    "then pass that folder as --data-root"
)
SPLITS = ("train2017", "val2017")


class CocoLayoutError(FileNotFoundError):
    """The data root is not a usable COCO root."""


def annotation_file(root: Path, split: str) -> Path:
    """``annotations/instances_<split>.json`` under ``root``."""
    return root / "annotations" / f"instances_{split}.json"


def check_root(data_root: Path | None) -> tuple[Path, list[str]]:
    """The checked root and the class names in category-id order (what the detector's heads predict).

    Raises:
        CocoLayoutError: what is missing or inconsistent, and how to prepare the data.
    """
    if data_root is None:
        raise CocoLayoutError(f"coco needs --data-root: {PREPARE}")
    root = Path(data_root).expanduser()
    names = {split: _check_split(root, split) for split in SPLITS}
    if names["train2017"] != names["val2017"]:
        raise CocoLayoutError(
            f"the train and val annotation files of {root} declare different categories "
            f"({len(names['train2017'])} vs {len(names['val2017'])}): both must list the same ones"
        )
    return root, names["train2017"]


def _check_split(root: Path, split: str) -> list[str]:
    images, ann = root / split, annotation_file(root, split)
    if not images.is_dir() or not ann.is_file():
        raise CocoLayoutError(f"{root} is not a COCO root: expected {images}/ and {ann}. {PREPARE}")
    data = _read_json(ann)
    categories = {c["id"]: c["name"] for c in data["categories"]}
    if not data["annotations"]:
        raise CocoLayoutError(f"{ann} has no annotations: a detector cannot be trained or scored on it")
    unknown = sorted({a["category_id"] for a in data["annotations"]} - categories.keys())
    if unknown:
        raise CocoLayoutError(
            f"{ann}: annotations use category ids {unknown[:10]} that its 'categories' list does not declare "
            f"(declared: {sorted(categories)[:10]}{'…' if len(categories) > 10 else ''})"
        )
    image_ids = {image["id"] for image in data["images"]}
    orphans = sorted({a["image_id"] for a in data["annotations"]} - image_ids)
    if orphans:
        raise CocoLayoutError(
            f"{ann}: annotations refer to image ids {orphans[:10]} that 'images' does not list"
        )
    on_disk = {p.name for p in images.iterdir()}
    missing = [image["file_name"] for image in data["images"] if Path(image["file_name"]).name not in on_disk]
    if missing:
        raise CocoLayoutError(
            f"{len(missing)} image(s) listed in {ann} are not in {images} (e.g. {missing[:3]})"
        )
    return [categories[i] for i in sorted(categories)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CocoLayoutError(f"{path} is not valid JSON ({exc}); re-download or regenerate it") from exc
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in keys):
        raise CocoLayoutError(f"{path} is not a COCO instances file: it needs the lists {', '.join(keys)}")
    return data


def split_sizes(root: Path) -> dict[str, int]:
    """Images per split as the annotation files list them."""
    return {split: len(_read_json(annotation_file(root, split))["images"]) for split in SPLITS}
