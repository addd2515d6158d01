"""Readers for the caption files retrieval is scored on: COCO captions, Flickr30k's token file, Karpathy's.

Each reader returns a :class:`CaptionSet`: the image files in evaluation order, every caption, and the
image each caption belongs to.  The order follows the reference code, because with tied scores the
rank depends on it (see ``metric.py``):

- ``coco-captions`` (Harmony ``eval/retrieval.py`` via torchvision's ``CocoCaptions``): images by
  ascending id, each image's captions in the order pycocotools lists them (file order);
- ``flickr30k-token`` (Harmony's ``FlickDataset``): every ``*jpg`` in the image folder, sorted by name
  (the repo takes ``glob``'s unsorted order), captions in token-file order; an image without
  captions is an error, as in the repo (a ``KeyError`` there);
- ``karpathy`` (``dataset_coco.json`` / ``dataset_flickr30k.json``): the entries of one ``split`` in
  file order, the ``raw`` sentences in order, image path ``<image_dir>/<filepath>/<filename>``.

Every problem with the files is found before a model is loaded, and the message names the file and
how to get it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READERS = ("coco-captions", "flickr30k-token", "karpathy")

GET_COCO = (
    "COCO 2017 captions: unzip val2017.zip and annotations_trainval2017.zip (images.cocodataset.org) into "
    "one folder, giving val2017/ and annotations/captions_val2017.json"
)
GET_COCO_KARPATHY = (
    "COCO Karpathy split: unzip val2014.zip (images.cocodataset.org) into the root, giving val2014/, and put "
    "dataset_coco.json from Karpathy's caption_datasets.zip (cs.stanford.edu/people/karpathy/deepimagesent) "
    "next to it"
)
GET_FLICKR = (
    "Flickr30k: unpack flickr30k.tar.gz (results_20130124.token) and flickr30k-images.tar (the "
    "flickr30k-images/ folder) from the dataset's request page into one folder"
)
GET_FLICKR_KARPATHY = (
    "Flickr30k Karpathy split: unpack flickr30k-images.tar into the root, giving flickr30k-images/, and put "
    "dataset_flickr30k.json from Karpathy's caption_datasets.zip next to it"
)
SYNTH = "a small synthetic copy in both layouts: harmony-bench data synth --kind {kind} --out DIR"


class RetrievalDataError(FileNotFoundError):
    """The data root lacks a file the protocol reads, or the file is not what the reader expects."""


@dataclass
class CaptionSet:
    """Images in evaluation order, all captions, and each caption's image index."""

    images: list[Path]
    captions: list[str]
    caption_image: list[int]
    files: dict[str, str] = field(default_factory=dict)  # what was read, for the record

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_image):
            raise ValueError("captions and caption_image must have the same length")


def read_captions(
    root: Path | None,
    reader: str,
    annotations: str,
    image_dir: str,
    split: str | None = None,
    dataset: str = "coco",
) -> CaptionSet:
    """Check the files under ``root`` and read them with ``reader``.

    Args:
        root: ``--data-root``.
        reader: ``coco-captions``, ``flickr30k-token`` or ``karpathy``.
        annotations: The caption file, relative to ``root`` (or absolute).
        image_dir: The image folder, relative to ``root`` (Karpathy: the base of each entry's ``filepath``).
        split: Karpathy's split (``test``, ``val``, ``train``, ``restval``); the others take no split.
        dataset: The task's dataset name; ``flickr30k`` or a COCO one (chooses the advice in errors).

    Raises:
        RetrievalDataError: A missing or malformed file, named, with how to get it.
    """
    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    how = _advice(dataset, reader)
    if root is None:
        raise RetrievalDataError(f"no data root given (--data-root DIR). {how}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RetrievalDataError(f"data root {root} does not exist or is not a directory. {how}")
    ann_path, image_root = root / annotations, root / image_dir
    if not ann_path.is_file():
        raise RetrievalDataError(f"{ann_path} is missing (config key annotations={annotations!r}). {how}")
    if not image_root.is_dir():
        raise RetrievalDataError(
            f"image folder {image_root} is missing (config key image_dir={image_dir!r}). {how}"
        )
    if reader == "karpathy":
        if not split:
            raise ValueError("the karpathy reader needs split (test, val, train or restval)")
        data = _karpathy(ann_path, image_root, split, how)
    elif split:
        raise ValueError(f"split={split!r} only applies to reader=karpathy (the {reader} file has no splits)")
    elif reader == "coco-captions":
        data = _coco(ann_path, image_root, how)
    else:
        data = _flickr_token(ann_path, image_root, how)
    missing = [p for p in data.images if not p.is_file()]
    if missing:
        raise RetrievalDataError(
            f"{len(missing)} of the {len(data.images)} images listed in {ann_path} are missing, "
            f"e.g. {missing[0]}. {how}"
        )
    if not data.images:
        raise RetrievalDataError(
            f"{ann_path} lists no images{f' in split {split!r}' if split else ''}. {how}"
        )
    data.files = {"annotations": str(ann_path.resolve()), "image_dir": str(image_root.resolve())}
    if split:
        data.files["split"] = split
    return data


def _advice(dataset: str, reader: str) -> str:
    if dataset == "flickr30k":
        get = GET_FLICKR_KARPATHY if reader == "karpathy" else GET_FLICKR
    else:
        get = GET_COCO_KARPATHY if reader == "karpathy" else GET_COCO
    kind = "flickr30k" if dataset == "flickr30k" else "coco-captions"
    return f"Prepare it: {get}; pass that folder as --data-root. Or {SYNTH.format(kind=kind)}."


def _load_json(path: Path, how: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RetrievalDataError(f"{path} is not valid JSON ({exc}). {how}") from exc


def _coco(ann_path: Path, image_root: Path, how: str) -> CaptionSet:
    """Images in ``CocoCaptions``' order (ascending id), each with its captions as pycocotools lists them."""
    from pycocotools.coco import COCO

    data = _load_json(ann_path, how)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise RetrievalDataError(
            f"{ann_path} is not a COCO captions file (needs 'images' and 'annotations'). {how}"
        )
    if data["annotations"] and "caption" not in data["annotations"][0]:
        raise RetrievalDataError(
            f"{ann_path} has no 'caption' fields: it is not a captions file (instances_*.json are for the "
            f"coco task; retrieval reads captions_val2017.json). {how}"
        )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    images, captions, owner = [], [], []
    for index, image_id in enumerate(sorted(coco.imgs)):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        images.append(image_root / coco.loadImgs(image_id)[0]["file_name"])
        captions += [ann["caption"] for ann in anns]
        owner += [index] * len(anns)
    return _checked(CaptionSet(images, captions, owner), ann_path, how)


def parse_token_file(text: str) -> dict[str, list[str]]:
    """Harmony's ``Read_Captions``: ``<file>#<i><TAB><caption>`` lines → ``{file: [captions in order]}``.

    As the repo: lines with fewer than two tab-separated fields are skipped, the last two characters of
    the first field (``#<i>``) are cut off, and the caption is the second field.
    """
    captions: dict[str, list[str]] = {}
    for line in text.split("\n"):
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        captions.setdefault(fields[0][:-2], []).append(fields[1])
    return captions


def _flickr_token(ann_path: Path, image_root: Path, how: str) -> CaptionSet:
    by_name = parse_token_file(ann_path.read_text(encoding="utf-8"))
    if not by_name:
        raise RetrievalDataError(f"{ann_path} has no '<file>#<i><TAB><caption>' lines. {how}")
    files = sorted(image_root.glob("*jpg"))
    if not files:
        nested = image_root / "flickr30k-images"
        hint = (
            f" The images are in {nested}/: pass --set image_dir={nested.relative_to(ann_path.parent)}"
            if nested.is_dir() and ann_path.parent == image_root
            else ""
        )
        raise RetrievalDataError(
            f"{image_root} holds no *jpg files (Harmony reads the folder as given).{hint} {how}"
        )
    unlisted = [f.name for f in files if f.name not in by_name]
    if unlisted:
        raise RetrievalDataError(
            f"{len(unlisted)} images in {image_root} have no captions in {ann_path}, e.g. {unlisted[0]}: "
            "Harmony's reader fails on them too; keep only the Flickr30k images in that folder"
        )
    captions, owner = [], []
    for index, path in enumerate(files):
        captions += by_name[path.name]
        owner += [index] * len(by_name[path.name])
    return CaptionSet(list(files), captions, owner)


def _karpathy(ann_path: Path, image_root: Path, split: str, how: str) -> CaptionSet:
    data = _load_json(ann_path, how)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RetrievalDataError(f"{ann_path} is not a Karpathy split file (no 'images' list). {how}")
    entries = [e for e in data["images"] if e.get("split") == split]
    if not entries:
        present = sorted({str(e.get("split")) for e in data["images"]})
        raise RetrievalDataError(f"{ann_path} has no images in split {split!r} (it has {present}). {how}")
    images, captions, owner = [], [], []
    for index, entry in enumerate(entries):
        images.append(image_root / entry.get("filepath", "") / entry["filename"])
        raw = [sentence["raw"] for sentence in entry.get("sentences", [])]
        captions += raw
        owner += [index] * len(raw)
    return _checked(CaptionSet(images, captions, owner), ann_path, how)


def _checked(data: CaptionSet, ann_path: Path, how: str) -> CaptionSet:
    """Refuse images without captions: their image→text query has no answer (the repo would count a miss)."""
    counts = [0] * len(data.images)
    for index in data.caption_image:
        counts[index] += 1
    empty = [data.images[i].name for i, c in enumerate(counts) if c == 0]
    if empty:
        raise RetrievalDataError(f"{len(empty)} images in {ann_path} have no caption, e.g. {empty[0]}. {how}")
    return data


class ImageFiles:
    """A map-style dataset over image paths: ``(transformed image, index)``; a corrupt file raises, naming it.

    Retrieval cannot drop an image (its captions would lose their answer), so a file that does not
    decode stops the run instead of being skipped.
    """

    def __init__(self, paths: list[Path], transform: Callable[[Any], Any]) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError ... on bad files
            raise RetrievalDataError(
                f"image {path} does not decode ({type(exc).__name__}: {exc}); replace it from the original "
                "archive (retrieval cannot skip an image: its captions would lose their answer)"
            ) from exc
        return self.transform(rgb), index
