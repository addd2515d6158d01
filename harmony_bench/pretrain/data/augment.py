"""The DINO/iBOT multi-crop augmentation Harmony trains with (``Harmony/utils.py: DataAugmentation``).

Global crop 1: blur p=1.0; global crop 2: blur p=0.1, solarize p=0.2; local crops: blur p=0.5; all with
RandomResizedCrop (bicubic), flip, colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8 and grayscale p=0.2.
Harmony's CLIP branch uses global crop 1.  Blur is PIL's ``ImageFilter.GaussianBlur`` with a radius drawn
from U(0.1, 2.0), as DINO's ``GaussianBlur``; it draws from torch's RNG (which the dataset seeds per sample)
instead of Python's ``random``, and runs on the PIL image, with no tensor op in the data path until
``ToTensor``.
"""

from __future__ import annotations

from typing import Any

from PIL import Image


def _base(size: int, scale: tuple[float, float]) -> list[Any]:
    from torchvision import transforms as T

    return [
        T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]


class RandomGaussianBlur:
    """With probability ``p``, PIL's Gaussian blur with a radius drawn from U(``low``, ``high``)."""

    def __init__(self, p: float, low: float = 0.1, high: float = 2.0) -> None:
        self.p, self.low, self.high = p, low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        """Blur (or not) with this sample's draws from torch's RNG."""
        import torch
        from PIL import ImageFilter

        apply, radius = torch.rand(2).tolist()
        if apply >= self.p:
            return image
        return image.filter(ImageFilter.GaussianBlur(radius=self.low + (self.high - self.low) * radius))


class MultiCrop:
    """PIL image -> ``[global1, global2, local1..localN]`` normalised tensors."""

    def __init__(self, crops: dict[str, Any]) -> None:
        from torchvision import transforms as T

        norm = [T.ToTensor(), T.Normalize(crops["mean"], crops["std"])]
        g, gs = int(crops["global_size"]), tuple(crops["global_scale"])
        lo, ls = int(crops["local_size"]), tuple(crops["local_scale"])
        self.global1 = T.Compose([*_base(g, gs), RandomGaussianBlur(1.0), *norm])
        self.global2 = T.Compose(
            [*_base(g, gs), RandomGaussianBlur(0.1), T.RandomSolarize(128, p=0.2), *norm]
        )
        self.local = T.Compose([*_base(lo, ls), RandomGaussianBlur(0.5), *norm])
        self.local_number = int(crops["local_number"])

    def __call__(self, image: Image.Image) -> list[Any]:
        """The crops in the order the objectives index them: two global, then the local ones."""
        return [self.global1(image), self.global2(image)] + [
            self.local(image) for _ in range(self.local_number)
        ]
