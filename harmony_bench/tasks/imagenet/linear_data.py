"""Training data of the augmented linear probe: the train transform and which images each update sees.

- :func:`train_transform`: ``RandomResizedCrop`` + horizontal flip + normalise (the protocol's
  ``train_transform`` block).  ``sampler: torchvision`` is torchvision's crop (up to 10 tries, then a
  centre crop); ``sampler: mae`` is MAE's ``util/crop.py`` crop, one draw of area and log-ratio with the
  side lengths clamped to the image (TF/BYOL style), :class:`SingleDrawRandomResizedCrop`.
- :func:`epoch_steps`: the global batches of one epoch, as index tensors.  ``steps_per_epoch: null``:
  one shuffled pass over the train set per epoch, the last batch partial unless ``drop_last``
  (``DistributedSampler`` + ``DataLoader`` in Harmony, iBOT, SLIP, MAE).  A number: DINOv2's
  iteration-based epochs, consecutive batches of an endless stream of shuffled passes.  Every rank
  computes the same steps (the permutation depends on the seed and the pass only).
- :class:`StepMicroBatches`: a ``batch_sampler`` over this rank's share of every step (``step[rank::world]``)
  in micro-batches of at most ``extract.batch_size`` images, so a global batch of 8192 never sits in
  memory as images; the loop regroups them by ``counts``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Sampler
from torchvision import transforms
from torchvision.transforms import functional as F

SAMPLERS = ("torchvision", "mae")


class SingleDrawRandomResizedCrop(transforms.RandomResizedCrop):
    """MAE's ``RandomResizedCrop``: one draw of area and log-ratio, no retry loop (``util/crop.py``)."""

    @staticmethod
    def get_params(img: Any, scale: list[float], ratio: list[float]) -> tuple[int, int, int, int]:
        """``(top, left, height, width)``: the sides from one draw, clamped to the image."""
        width, height = F.get_image_size(img)
        area = height * width
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        log_ratio = torch.log(torch.tensor(ratio))
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = min(int(round(math.sqrt(target_area * aspect_ratio))), width)
        h = min(int(round(math.sqrt(target_area / aspect_ratio))), height)
        i = int(torch.randint(0, height - h + 1, size=(1,)).item())
        j = int(torch.randint(0, width - w + 1, size=(1,)).item())
        return i, j, h, w


def train_transform(spec: dict[str, Any], prep: dict[str, Any]) -> Any:
    """``Compose([RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize])`` from ``train_transform``.

    Args:
        spec: The protocol's ``train_transform`` block (``crop`` null: the eval crop).
        prep: The resolved preprocessing (crop, mean, std).
    """
    sampler = spec.get("sampler", "torchvision")
    if sampler not in SAMPLERS:
        raise ValueError(f"train_transform.sampler must be one of {SAMPLERS}, got {sampler!r}")
    size = int(spec.get("crop") or prep.get("crop") or prep["input_size"])
    crop = SingleDrawRandomResizedCrop if sampler == "mae" else transforms.RandomResizedCrop
    steps = [
        crop(
            size,
            scale=tuple(float(s) for s in spec["scale"]),
            ratio=tuple(float(r) for r in spec["ratio"]),
            interpolation=transforms.InterpolationMode(spec["interpolation"]),
        )
    ]
    if float(spec["hflip"]) > 0:
        steps.append(transforms.RandomHorizontalFlip(float(spec["hflip"])))
    steps += [transforms.ToTensor(), transforms.Normalize(mean=list(prep["mean"]), std=list(prep["std"]))]
    return transforms.Compose(steps)


def _permutation(n: int, seed: int, index: int) -> torch.Tensor:
    from harmony_bench.tasks.imagenet.finetune_state import epoch_seed

    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, index, 0)))


def epoch_steps(
    n: int, batch: int, epoch: int, seed: int, steps_per_epoch: int | None = None, drop_last: bool = False
) -> list[torch.Tensor]:
    """The global batches (index tensors into the train set) of epoch ``epoch`` (0-based)."""
    if n < 1 or batch < 1:
        raise ValueError(f"need a non-empty train set and batch, got n={n}, batch={batch}")
    if steps_per_epoch is None:
        order = _permutation(n, seed, epoch)
        steps = list(order.split(batch))
        if drop_last and steps[-1].numel() < batch:
            steps.pop()
        return steps
    start, count = epoch * steps_per_epoch * batch, steps_per_epoch * batch
    first, last = start // n, (start + count - 1) // n
    stream = torch.cat([_permutation(n, seed, k) for k in range(first, last + 1)])
    offset = start - first * n
    return list(stream[offset : offset + count].split(batch))


def steps_in_epoch(n: int, batch: int, steps_per_epoch: int | None, drop_last: bool) -> int:
    """How many updates one epoch has (what a per-iteration schedule divides by)."""
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    return n // batch if drop_last else math.ceil(n / batch)


class StepMicroBatches(Sampler[list[int]]):
    """This rank's share of each step, cut into micro-batches; ``counts[s]`` micro-batches make step ``s``."""

    def __init__(self, steps: list[torch.Tensor], rank: int, world: int, micro: int) -> None:
        self.batches: list[list[int]] = []
        self.counts: list[int] = []
        for step in steps:
            share = step[rank::world]
            chunks = [c.tolist() for c in share.split(micro)] if share.numel() else []
            self.counts.append(len(chunks))
            self.batches.extend(chunks)

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
