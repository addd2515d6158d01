"""Image-caption sources: where each sample's image bytes and caption come from.

Three layouts, named by a prefix on ``--data``:

- ``cc3m:DIR`` (alias ``pairs:``): sub-folders of ``<key>.jpg|png`` + ``<key>.txt``, the Harmony repo's CC3M
  layout (img2dataset's extracted output);
- ``wds:DIR`` (or a ``.tar`` file): webdataset shards as img2dataset writes them; members are indexed once
  with the stdlib ``tarfile`` and read by offset, so no webdataset package is needed and access is random;
- ``csv:FILE`` / ``tsv:FILE``: ``path`` + ``caption`` columns (header optional), paths relative to the file.

A plain path is recognised by its contents.  Samples are ``(ImageRef, caption)`` with lazy image reads.
"""

from __future__ import annotations

import csv
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PATH_COLUMNS = ("path", "filepath", "image", "file", "url")
CAPTION_COLUMNS = ("caption", "text", "title")


@dataclass(frozen=True)
class ImageRef:
    """Where an image's bytes are: a file, or a byte range inside a tar shard."""

    path: str
    offset: int = -1
    size: int = -1

    def read(self) -> bytes:
        """The encoded image bytes (raises OSError if the file is gone or short)."""
        with open(self.path, "rb") as handle:
            if self.offset < 0:
                return handle.read()
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size:
            raise OSError(f"short read in {self.path} at {self.offset}")
        return data


Sample = tuple[ImageRef, str]


def pair_folders(root: Path) -> list[Sample]:
    """``root/**/<key>.jpg`` with ``<key>.txt`` next to it; unpaired files are counted and skipped."""
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    samples, unpaired = [], 0
    for image in images:
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            unpaired += 1
            continue
        samples.append((ImageRef(str(image)), caption.read_text(encoding="utf-8", errors="replace").strip()))
    if unpaired:
        log.warning("data: %d images in %s have no .txt caption; skipped", unpaired, root)
    return samples


def tar_shards(root: Path) -> list[Sample]:
    """Index every ``*.tar`` under ``root`` (or the one file): ``<key>.<img>`` + ``<key>.txt`` members."""
    shards = [root] if root.is_file() else sorted(root.rglob("*.tar"))
    samples: list[Sample] = []
    for shard in shards:
        try:
            samples += _index_shard(shard)
        except (tarfile.TarError, OSError) as exc:
            log.warning("data: unreadable shard %s skipped (%s)", shard, exc)
    return samples


def _index_shard(shard: Path) -> list[Sample]:
    images: dict[str, tarfile.TarInfo] = {}
    captions: dict[str, str] = {}
    with tarfile.open(shard, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if f".{ext.lower()}" in IMAGE_SUFFIXES:
                images[key] = member
            elif ext.lower() == "txt":
                handle = tar.extractfile(member)
                captions[key] = handle.read().decode("utf-8", errors="replace").strip() if handle else ""
    missing = sorted(set(images) - set(captions))
    if missing:
        log.warning("data: %d images in %s have no caption; skipped", len(missing), shard)
    return [
        (ImageRef(str(shard), m.offset_data, m.size), captions[k])
        for k, m in sorted(images.items())
        if k in captions
    ]


def caption_table(path: Path) -> list[Sample]:
    """A CSV/TSV of image path + caption; a header naming the columns is optional."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter=delimiter))
    if not rows:
        raise ValueError(f"{path} is empty; expected path{delimiter!r}caption rows")
    header = [c.strip().lower() for c in rows[0]]
    path_col, cap_col = 0, 1
    if any(c in PATH_COLUMNS for c in header) and any(c in CAPTION_COLUMNS for c in header):
        path_col = next(i for i, c in enumerate(header) if c in PATH_COLUMNS)
        cap_col = next(i for i, c in enumerate(header) if c in CAPTION_COLUMNS)
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) <= max(path_col, cap_col)]
    if bad:
        raise ValueError(f"{path}: rows {bad[:5]} have fewer than 2 columns (delimiter {delimiter!r})")
    return [(ImageRef(str((path.parent / r[path_col]).resolve())), r[cap_col].strip()) for r in rows]


def open_source(spec: str) -> list[Sample]:
    """The samples of a ``--data`` spec (``cc3m:DIR``, ``wds:DIR``, ``csv:FILE``, ``tsv:FILE`` or a path)."""
    kind, sep, rest = spec.partition(":")
    if not sep or len(kind) == 1:  # no prefix (or a Windows drive letter)
        kind, rest = "auto", spec
    path = Path(rest).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {spec}: {path} does not exist")
    kind = kind.lower()
    if kind == "auto":
        kind = _guess_kind(path)
    readers = {"cc3m": pair_folders, "pairs": pair_folders, "wds": tar_shards, "csv": caption_table}
    readers["tsv"] = caption_table
    if kind not in readers:
        raise ValueError(f"--data {spec}: unknown layout {kind!r}; use cc3m:, wds:, csv: or tsv:")
    samples = readers[kind](path)
    if not samples:
        raise ValueError(
            f"--data {spec}: no image-caption pairs found. Expected {kind} layout "
            "(cc3m: DIR/**/KEY.jpg + KEY.txt; wds: DIR/*.tar; csv/tsv: path,caption rows)"
        )
    log.info("data: %d image-caption pairs from %s (%s layout)", len(samples), path, kind)
    return samples


def _guess_kind(path: Path) -> str:
    if path.is_file():
        return "wds" if path.suffix == ".tar" else "csv"
    if next(path.glob("*.tar"), None) is not None:
        return "wds"
    return "cc3m"
