"""Checks that ``--data-root`` holds ADEChallengeData2016 before any model is built."""

from __future__ import annotations

from pathlib import Path

PREPARE = (
    "download ADEChallengeData2016.zip (the SceneParsing release) and unzip it, or write a small synthetic "
    "copy with `harmony-bench data synth --kind ade20k --out DIR`; then pass the ADEChallengeData2016 folder"
)
SPLITS = ("training", "validation")


def resolve_root(data_root: Path | None) -> Path:
    """The ADEChallengeData2016 folder (the given one, or the one inside it), checked for both splits.

    Raises:
        FileNotFoundError: no root given, or a split's images/annotations are missing or do not pair up.
    """
    if data_root is None:
        raise FileNotFoundError(f"ade20k needs --data-root: {PREPARE}")
    root = Path(data_root).expanduser()
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    for split in SPLITS:
        images, labels = root / "images" / split, root / "annotations" / split
        if not images.is_dir() or not labels.is_dir():
            raise FileNotFoundError(
                f"{root} is not an ADE20K root: expected {images} and {labels}. {PREPARE}"
            )
        stems = {p.stem for p in images.glob("*.jpg")}
        masks = {p.stem for p in labels.glob("*.png")}
        if not stems:
            raise FileNotFoundError(f"no *.jpg images in {images}. {PREPARE}")
        unpaired = sorted(stems ^ masks)
        if unpaired:
            raise FileNotFoundError(
                f"{len(unpaired)} image(s) in {images} and annotation(s) in {labels} do not pair up "
                f"(e.g. {unpaired[:3]}): every NAME.jpg needs NAME.png"
            )
    return root


def split_sizes(root: Path) -> dict[str, int]:
    """Images per split, for the record's dataset identity."""
    return {split: sum(1 for _ in (root / "images" / split).glob("*.jpg")) for split in SPLITS}
