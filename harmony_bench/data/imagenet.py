"""ImageNet-1k in its standard layout: checks, splits that report corrupt images, class names, identity.

The layout is torchvision's ``ImageFolder``: ``<root>/train/<wnid>/*.JPEG`` and
``<root>/val/<wnid>/*.JPEG`` (the validation images sorted into class folders,
as the usual ``valprep.sh`` does).  Synthetic data from ``harmony-bench data
synth --kind imagenet`` has the same layout plus ``harmony_bench_synth.json``
and ``classnames.txt``, so the same readers serve both.

Corrupt images.  A real copy of ImageNet sometimes has a truncated or
unreadable file.  :class:`ImageNetFolder` never crashes on one and never
drops it silently: its loader catches the decode error, logs a warning,
records ``(path, error)`` in :attr:`ImageNetFolder.corrupt` (and, when the
split was opened with ``corrupt_log=``, appends a JSON line to that file, so
that events from ``DataLoader`` worker processes are seen by the main
process), and ``__getitem__`` returns ``None`` for that sample.  The sample is
excluded explicitly by :func:`skip_corrupt_collate`, the ``collate_fn`` to use
with these datasets; task runners report the count in the result record.

Note that ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` (set globally by
some libraries) makes PIL pad truncated JPEGs instead of raising; such files
then load and are not counted.  Nothing in harmony-bench sets that flag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import default_collate
from torchvision.datasets import ImageFolder

from harmony_bench.data.identity import dataset_block, read_manifest

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
IMAGENET_CLASSES = 1000
CLASSNAME_STYLES = ("clip", "wordnet", "slip", "wnid")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

PREPARE_HELP = (
    "ImageNet-1k must be in the standard layout: <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG "
    "(download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org, untar the per-class "
    "train tars into train/<wnid>/, and sort the flat validation images into val/<wnid>/ folders, e.g. with "
    "the usual valprep.sh script); pass that root as --data-root. For a small synthetic copy in the same "
    "layout (smoke tests only): harmony-bench data synth --kind imagenet --out DIR"
)


class DatasetLayoutError(FileNotFoundError):
    """The dataset root is missing or not in the expected layout; the message says how to prepare it."""


# --------------------------------------------------------------------------- layout


def check_imagenet_root(root: Path | str | None, splits: Sequence[str] = SPLITS) -> Path:
    """Check that ``root`` holds the ImageFolder layout for ``splits`` and return it resolved.

    Args:
        root: The dataset root (``--data-root``); ``None`` means the user gave none.
        splits: Split folders that must exist with at least one ``<wnid>/`` class folder holding images.

    Raises:
        DatasetLayoutError: What is missing, and how to prepare ImageNet or make synthetic data.
    """
    if root is None:
        raise DatasetLayoutError(f"no ImageNet root given (--data-root DIR). {PREPARE_HELP}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"ImageNet root {path} does not exist or is not a directory. {PREPARE_HELP}")
    for split in splits:
        _check_split(path, split)
    return path.resolve()


def _check_split(root: Path, split: str) -> None:
    folder = root / split
    if not folder.is_dir():
        raise DatasetLayoutError(f"ImageNet root {root} has no {split}/ folder. {PREPARE_HELP}")
    class_dirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if not class_dirs:
        loose = [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise DatasetLayoutError(
                f"{folder} holds {len(loose)} images directly but no <wnid>/ class folders: the validation "
                f"images must be sorted into val/<wnid>/ folders (e.g. with valprep.sh). {PREPARE_HELP}"
            )
        raise DatasetLayoutError(f"{folder} has no <wnid>/ class folders. {PREPARE_HELP}")
    if not any(_has_image(d) for d in class_dirs):
        raise DatasetLayoutError(f"the class folders in {folder} hold no images. {PREPARE_HELP}")


def _has_image(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())


def dataset_identity(root: Path) -> dict[str, Any]:
    """The record's ``dataset`` block of an ImageNet root (``data.identity.dataset_block``)."""
    return dataset_block(root, "imagenet-1k", "imagenet-synthetic")


# --------------------------------------------------------------------------- splits


class ImageNetFolder(ImageFolder):
    """``ImageFolder`` whose corrupt images are recorded and returned as ``None`` instead of raising.

    Use :func:`skip_corrupt_collate` as the ``DataLoader``'s ``collate_fn`` to drop them, and read
    :attr:`corrupt` after the pass to report them.

    Args:
        root: The split folder (``<root>/train`` or ``<root>/val``).
        transform: Transform applied to each PIL image.
        corrupt_log: Optional JSON-lines file that corrupt-image events are appended to, so that events
            in ``DataLoader`` worker processes reach the main process.
    """

    def __init__(
        self, root: Path | str, transform: Callable | None = None, corrupt_log: Path | None = None
    ) -> None:
        super().__init__(str(root), transform=transform)
        self.corrupt_log = Path(corrupt_log) if corrupt_log else None
        self._corrupt: dict[str, str] = {}

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error ... on bad files
            self._record_corrupt(path, exc)
            return None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def _record_corrupt(self, path: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("corrupt image %s (%s): excluded from this pass and counted in the record", path, error)
        self._corrupt[path] = error
        if self.corrupt_log is not None:
            self.corrupt_log.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"path": path, "error": error}) + "\n"
            fd = os.open(self.corrupt_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    @property
    def corrupt(self) -> list[tuple[str, str]]:
        """``(path, error)`` of every corrupt image met so far (this process, plus ``corrupt_log``)."""
        events = dict(self._corrupt)
        if self.corrupt_log is not None and self.corrupt_log.is_file():
            for line in self.corrupt_log.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    event = json.loads(line)
                    events.setdefault(event["path"], event["error"])
        return sorted(events.items())


def imagenet_split(
    root: Path, split: str, transform: Callable | None, corrupt_log: Path | None = None
) -> ImageNetFolder:
    """One split of an ImageNet-layout root (checked first) as an :class:`ImageNetFolder`.

    Args:
        root: Dataset root holding ``<split>/<wnid>/`` folders.
        split: ``train`` or ``val`` (any folder name in the root works).
        transform: Transform for the PIL images (e.g. ``Backbone.preprocess``).
        corrupt_log: See :class:`ImageNetFolder`.

    Raises:
        DatasetLayoutError: The split is missing or empty.
    """
    root = check_imagenet_root(root, [split])
    return ImageNetFolder(root / split, transform=transform, corrupt_log=corrupt_log)


def skip_corrupt_collate(batch: list[Any]) -> Any:
    """``collate_fn`` that drops the ``None`` samples of corrupt images, then collates as usual.

    Returns ``None`` when every sample of the batch was corrupt; callers skip such batches.
    """
    kept = [sample for sample in batch if sample is not None]
    return default_collate(kept) if kept else None


def file_list_hash(dataset: ImageFolder) -> str:
    """sha256 over ``(relative path, size, class index)`` of every sample: changes when the files do."""
    digest = hashlib.sha256()
    base = Path(dataset.root)
    for path, target in dataset.samples:
        size = os.stat(path).st_size
        digest.update(f"{Path(path).relative_to(base).as_posix()}\t{size}\t{target}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- class names


def wnids(root: Path) -> list[str]:
    """Class folder names (WordNet ids) of ``root`` in class-index order (sorted, as ImageFolder does)."""
    root = Path(root)
    split = next((s for s in ("val", "train") if (root / s).is_dir()), None)
    if split is None:
        raise DatasetLayoutError(f"ImageNet root {root} has neither val/ nor train/. {PREPARE_HELP}")
    return sorted(d.name for d in (root / split).iterdir() if d.is_dir() and not d.name.startswith("."))


def class_names(root: Path, style: str = "clip", labels_file: Path | str | None = None) -> list[str]:
    """Human-readable class names of ``root`` in class-index order, for zero-shot prompts.

    Args:
        root: ImageNet-layout root.
        style: ``clip`` — CLIP's curated names (``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES``,
            in sorted-wnid order, matched by wnid through timm's ``imagenet_synsets.txt``);
            ``wordnet`` — the first WordNet lemma of each synset (timm's ``imagenet_synset_to_lemma.txt``);
            ``slip`` — the names of SLIP's and Harmony's ``labels.json`` (its ``imagenet`` entry), which are
            CLIP's names one for one in the same order (all 1000 checked against facebookresearch/SLIP@c6faf5d
            labels.json:L923 and MohammedSB/Harmony@848f7ac Harmony/data/meta/labels.json:L923), so the
            same list as ``clip``; ``wnid`` — the folder names themselves. Synthetic roots always use the
            names in their manifest (``classnames.txt``), except for ``wnid``.
        labels_file: A names file that overrides ``style``: a JSON list of names in class-index order,
            a JSON object with an ``imagenet`` list (SLIP's ``labels.json``), a JSON object
            ``{wnid: name}``, or a text file with one name per line (class-index order) or
            ``wnid<TAB>name`` lines.  A list of exactly 1000 names is read in the standard sorted-wnid
            order, so it also serves roots that hold a subset of the classes.

    Raises:
        ValueError: Unknown style, or names that do not cover the classes.
    """
    if style not in CLASSNAME_STYLES:
        raise ValueError(f"class-name style must be one of {CLASSNAME_STYLES}, got {style!r}")
    ids = wnids(root)
    if style == "wnid":
        return ids
    if labels_file is not None:
        return _names_from_file(Path(labels_file).expanduser(), ids)
    manifest = read_manifest(root)
    if manifest is not None:
        by_wnid = dict(zip(manifest["wnids"], manifest["classes"], strict=True))
        return _lookup(by_wnid, ids, f"the synthetic manifest of {root}")
    if style == "slip":  # SLIP's / Harmony's labels.json ImageNet names are CLIP's (see above)
        style = "clip"
    return _lookup(_standard_names(style), ids, f"the {style} ImageNet-1k class names")


def _standard_names(style: str) -> dict[str, str]:
    """Map wnid -> name for the 1000 ImageNet-1k classes from installed packages."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    synsets = info.label_names()
    if style == "clip":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return dict(zip(synsets, IMAGENET_CLASSNAMES, strict=True))
    return {wnid: info.label_name_to_description(wnid, detailed=False).split(",")[0] for wnid in synsets}


def _lookup(by_wnid: dict[str, str], ids: list[str], what: str) -> list[str]:
    missing = [wnid for wnid in ids if wnid not in by_wnid]
    if missing:
        raise ValueError(
            f"{len(missing)} class folders are not in {what}: {missing[:5]}; pass labels_file "
            "(--set labels_file=PATH) with a name for each class"
        )
    return [by_wnid[wnid] for wnid in ids]


def _names_from_file(path: Path, ids: list[str]) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"class-names file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "imagenet" in data:
            data = data["imagenet"]
        if isinstance(data, dict):
            return _lookup({str(k): str(v) for k, v in data.items()}, ids, str(path))
        names = [str(name) for name in data]
    else:
        lines = [line.rstrip("\n") for line in text.splitlines() if line.strip()]
        if lines and all("\t" in line for line in lines):
            return _lookup(dict(line.split("\t", 1) for line in lines), ids, str(path))
        names = lines
    if len(names) == len(ids):
        return names
    if len(names) == IMAGENET_CLASSES:  # the 1000 names in sorted-wnid order, for a subset of the classes
        from timm.data import ImageNetInfo

        return _lookup(dict(zip(ImageNetInfo().label_names(), names, strict=True)), ids, str(path))
    raise ValueError(f"{path} has {len(names)} names but the dataset has {len(ids)} classes")


__all__ = [
    "DatasetLayoutError",
    "ImageNetFolder",
    "check_imagenet_root",
    "class_names",
    "dataset_identity",
    "file_list_hash",
    "imagenet_split",
    "skip_corrupt_collate",
    "wnids",
]
