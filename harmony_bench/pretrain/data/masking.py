"""Masks: iBOT's block-wise patch masks, MAE's random token drop, and caption token masks.

All draw from an explicit ``numpy.random.Generator`` seeded per sample, so a
sample's masks depend only on (seed, epoch, index): the same after a resume and
with any number of data-loader workers.
"""

from __future__ import annotations

import math

import numpy as np


def pred_ratio(rng: np.random.Generator, means: list[float], variances: list[float]) -> float:
    """IBOT's per-image prediction ratio: one of the (mean +- var) ranges, picked at random."""
    ratios = [
        float(rng.uniform(m - v, m + v)) if v > 0 else float(m) for m, v in zip(means, variances, strict=True)
    ]
    return ratios[int(rng.integers(len(ratios)))]


def block_mask(
    rng: np.random.Generator,
    grid: tuple[int, int],
    ratio: float,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
) -> np.ndarray:
    """BEiT/iBOT block-wise masking: random rectangles until about ``ratio`` of the patches are masked."""
    height, width = grid
    mask = np.zeros(grid, dtype=bool)
    target = int(ratio * height * width)
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    count = 0
    while count < target:
        added = _add_block(rng, mask, target - count, log_aspect)
        if added == 0:
            break
        count += added
    return mask


def _add_block(
    rng: np.random.Generator, mask: np.ndarray, budget: int, log_aspect: tuple[float, float]
) -> int:
    height, width = mask.shape
    low = min(max((min(height, width) // 3) ** 2 // 4, 1), budget)  # iBOT: min_num_patches = 4 of a 14x14
    for _ in range(10):
        area = rng.uniform(low, budget)
        ratio = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(area * ratio)))
        w = int(round(math.sqrt(area / ratio)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            new = h * w - int(mask[top : top + h, left : left + w].sum())
            if 0 < new <= budget:
                mask[top : top + h, left : left + w] = True
                return new
    return 0


def random_permutation(rng: np.random.Generator, num_patches: int) -> np.ndarray:
    """MAE's random masking as a permutation: the first ``int(N * (1 - ratio))`` entries are kept."""
    return rng.permutation(num_patches)


def keep_count(num_patches: int, mask_ratio: float) -> int:
    """How many patches MAE keeps: ``int(N * (1 - mask_ratio))`` (MAE's ``len_keep``)."""
    return int(num_patches * (1 - mask_ratio))


def text_mask(
    rng: np.random.Generator, tokens: np.ndarray, ratio: float, special: tuple[int, ...]
) -> np.ndarray:
    """``round(ratio * n)`` (at least one) of a caption's ``n`` real tokens, never SOT/EOT/padding."""
    candidates = np.flatnonzero(~np.isin(tokens, special) & (tokens != 0))
    mask = np.zeros(tokens.shape, dtype=bool)
    if len(candidates) and ratio > 0:
        count = max(1, int(round(ratio * len(candidates))))
        mask[rng.choice(candidates, size=count, replace=False)] = True
    return mask
