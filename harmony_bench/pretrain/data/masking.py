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
    """Harmony's caption mask: each token strictly between SOT and EOT is masked with probability ``ratio``.

    ``get_masked_captions`` (``models/utils.py`` L15-L33) draws ``bernoulli(0.2)`` for every position and
    then clears the SOT (position 0), the EOT (the caption's argmax) and everything after it.  So a caption
    gets Binomial(n, 0.2) masks: short ones often none (0.8^n), and then contribute nothing to MLM or text
    distillation.  ``special`` is ``(sot, eot)``; the EOT position is its first occurrence.
    """
    mask = np.zeros(tokens.shape, dtype=bool)
    eot = np.flatnonzero(tokens == special[-1])
    end = int(eot[0]) if len(eot) else int(np.count_nonzero(tokens))  # no EOT: up to the padding
    draws = rng.random(max(end - 1, 0)) < ratio  # positions 1 .. EOT - 1
    mask[1:end] = draws
    return mask
