"""Masking ratios: MAE's 75% random drop, iBOT's block-wise masks with prediction ratio, MLM's 20%."""

import numpy as np
import pytest
import torch

from harmony_bench.pretrain.data import masking
from harmony_bench.pretrain.objectives.mae import split_permutation


def count_components(mask: np.ndarray) -> int:
    """4-connected regions of True cells (a small flood fill)."""
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        while stack:
            r, c = stack.pop()
            if not (0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]) or seen[r, c] or not mask[r, c]:
                continue
            seen[r, c] = True
            stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
    return count


def test_mae_random_masking_drops_75_percent():
    rng = np.random.default_rng(0)
    n = 196  # ViT-B/16 at 224
    perm = torch.from_numpy(np.stack([masking.random_permutation(rng, n) for _ in range(8)]))
    keep, restore, mask = split_permutation(perm, 0.75)
    assert keep.shape == (8, 49) and masking.keep_count(n, 0.75) == 49
    assert torch.equal(mask.sum(1), torch.full((8,), 147.0))
    for b in range(8):
        assert sorted(perm[b].tolist()) == list(range(n))
        assert not mask[b, keep[b]].any()  # kept patches are the visible ones
        assert torch.equal(perm[b][restore[b]], torch.arange(n))  # restore undoes the shuffle
    assert len({tuple(k.tolist()) for k in keep}) == 8  # a different draw per image


def test_ibot_pred_ratio_is_zero_or_uniform_around_03():
    rng = np.random.default_rng(1)
    ratios = np.array([masking.pred_ratio(rng, [0.0, 0.3], [0.0, 0.2]) for _ in range(2000)])
    zeros = ratios == 0
    assert 0.45 < zeros.mean() < 0.55  # one of the two settings, picked at random
    rest = ratios[~zeros]
    assert rest.min() >= 0.1 and rest.max() <= 0.5
    assert abs(rest.mean() - 0.3) < 0.01
    assert masking.pred_ratio(rng, [0.3], [0.0]) == 0.3


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_ibot_block_masks_hit_the_ratio_with_rectangles(ratio):
    rng = np.random.default_rng(2)
    grid = (14, 14)
    target = int(ratio * 196)
    counts, components = [], []
    for _ in range(200):
        mask = masking.block_mask(rng, grid, ratio, (0.3, 1 / 0.3))
        counts.append(int(mask.sum()))
        components.append(count_components(mask))
    counts = np.array(counts)
    assert counts.max() <= target  # never more than asked
    assert counts.mean() >= 0.9 * target  # and close to it
    assert np.mean(components) < target / 4  # blocks, not scattered patches
    assert masking.block_mask(rng, grid, 0.0).sum() == 0


def test_block_mask_single_block_is_a_rectangle_within_aspect():
    rng = np.random.default_rng(3)
    for _ in range(50):
        mask = np.zeros((14, 14), dtype=bool)
        added = masking._add_block(rng, mask, 40, (np.log(0.3), np.log(1 / 0.3)))
        if not added:
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        h, w = len(rows), len(cols)
        assert mask.sum() == h * w == added  # one filled rectangle
        assert h * w <= 40


def test_caption_masks_are_bernoulli_020_per_token_between_sot_and_eot():
    """Harmony ``get_masked_captions`` (``models/utils.py`` L14-L33): ``bernoulli(0.20)`` at every position,
    then SOT (position 0), EOT (the argmax) and everything after it cleared.  So a caption of n real tokens
    gets Binomial(n, 0.2) masks: some none at all (probability 0.8^n), short ones fewer."""
    sot, eot = 49406, 49407
    rng = np.random.default_rng(4)
    draws = 4000
    for length in (1, 3, 10, 23):
        tokens = np.zeros(32, dtype=np.int64)
        tokens[0] = sot
        tokens[1 : 1 + length] = rng.integers(100, 40000, size=length)
        tokens[1 + length] = eot
        masks = np.stack([masking.text_mask(rng, tokens, 0.2, (sot, eot)) for _ in range(draws)])
        assert not masks[:, 0].any() and not masks[:, 1 + length :].any()  # SOT, EOT, padding: never
        counts = masks.sum(1)
        assert abs(counts.mean() / length - 0.2) < 0.02  # each real token with probability 0.2
        none = (counts == 0).mean()
        assert abs(none - 0.8**length) < 0.03  # captions without any mask occur, as Binomial says
        per_position = masks[:, 1 : 1 + length].mean(0)
        assert np.all(np.abs(per_position - 0.2) < 0.04)  # every position alike
        assert counts.var() == pytest.approx(length * 0.2 * 0.8, rel=0.15)  # not a fixed count
    assert masking.text_mask(rng, tokens, 0.0, (sot, eot)).sum() == 0


def test_dataset_samples_carry_the_masks(tmp_path):
    """End to end on synthetic captions: shapes, the MLM share, [MASK] ids, per-sample determinism."""
    from harmony_bench.data.synth import captions
    from harmony_bench.models.build import build_tokenizer
    from harmony_bench.pretrain.data.dataset import EPOCH_STRIDE, PretrainDataset
    from harmony_bench.pretrain.data.sources import open_source

    from ._pretrain_util import tiny_cfg

    captions.write(tmp_path / "c", n=12, size=48)
    cfg = tiny_cfg("harmony")
    tok = build_tokenizer(cfg["model"]["text"])
    ds = PretrainDataset(open_source(f"cc3m:{tmp_path / 'c' / 'pairs'}"), cfg, 8, tok)
    real = masked = 0
    for i in range(12):
        s = ds[i]
        assert [c.shape[-1] for c in s["crops"]] == [32, 32, 16, 16]
        assert s["block_masks"].shape == (2, 4, 4) and s["perms"].shape == (2, 16)
        text, m = s["text"], s["text_mask"]
        assert torch.equal(s["text_masked"][m], torch.full((int(m.sum()),), 49408))
        assert torch.equal(s["text_masked"][~m], text[~m])
        real += int(((text != 0) & (text != 49406) & (text != 49407)).sum())
        masked += int(m.sum())
    assert 0.12 < masked / real < 0.28  # Bernoulli(0.2) over ~100 tokens
    a, b, c = ds[3], ds[3], ds[EPOCH_STRIDE + 3]  # same (epoch, index) -> same sample; next epoch differs
    assert torch.equal(a["crops"][0], b["crops"][0]) and torch.equal(a["perms"], b["perms"])
    assert not torch.equal(a["crops"][0], c["crops"][0]) and not torch.equal(a["perms"], c["perms"])
