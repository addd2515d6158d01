"""The evaluation transform a card declares: resize, center crop, tensor, normalise."""

from __future__ import annotations

from typing import Any

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def eval_transform(preprocessing: dict[str, Any], size: int | None = None) -> Any:
    """A torchvision transform for PIL images, from a card's ``preprocessing`` block.

    Args:
        preprocessing: ``resize`` (shorter side), ``crop``, ``interpolation``, ``mean``, ``std``.
        size: Evaluate at another input size (e.g. 512 for dense tasks); resize and crop keep their ratio.

    Returns:
        ``Compose([Resize, CenterCrop, ToTensor, Normalize])``.
    """
    from torchvision import transforms

    interpolation = preprocessing.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"preprocessing.interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
        )
    crop = int(preprocessing.get("crop") or preprocessing["input_size"])
    resize = int(preprocessing.get("resize") or crop)
    if size is not None and size != crop:
        resize, crop = round(resize * size / crop), size
    return transforms.Compose(
        [
            transforms.Resize(resize, interpolation=transforms.InterpolationMode(interpolation)),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(preprocessing["mean"]), std=list(preprocessing["std"])),
        ]
    )
