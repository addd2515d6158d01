"""Recall@k of image→text and text→image retrieval from L2-normalised embeddings (torch, chunked).

The rule is Harmony's ``get_retrieval_metrics`` (``Harmony/eval/retrieval.py``, from ProtoCLIP/TCL):
the score of a pair is the dot product of the normalised embeddings; for each query the gallery is
ranked by ``np.argsort(score)[::-1]``; an image→text query's rank is the best rank of any of its
captions, a text→image query's the rank of its one image; recall@k is the percentage of queries whose
rank is below ``k``, and ``mean_recall`` the mean of the recalls (the repo's mean of the two
directions' means, k = 1, 5, 10).

Ties.  ``np.argsort``'s default sort is not stable for long rows, so the repo leaves the order of equal
scores to NumPy's sort implementation.  We fix it to what a *stable* sort gives in that same
expression: among equal scores the gallery item with the higher index comes first.  So the position of
gallery item ``g`` for a query with scores ``s`` is ``#{j: s_j > s_g} + #{j: s_j = s_g, j > g}``.
Real embeddings are almost never tied; identical captions of different images are (same text, same
embedding), and so is a collapsed model, which this rule scores near chance instead of 100 %.

The score matrix is never held whole (Flickr30k's full folder is 31,783 × 158,915): image rows are
processed in chunks, twice — the first pass ranks every image query and collects each caption's
score with its own image, the second counts, for every caption, the images that outrank it.  Both
directions read the same image-major products, so text→image scores are exactly the transpose of
image→text ones, as in the repo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

KS = (1, 5, 10)
CHUNK_ELEMENTS = 1 << 24  # scores per chunk (64 MiB of fp32)


def caption_table(caption_image: torch.Tensor, n_images: int) -> torch.Tensor:
    """``(n_images, max captions)`` caption indices per image, padded with ``-1``; captions in index order.

    Raises:
        ValueError: An image has no caption (its image→text query could never be answered).
    """
    import torch

    counts = torch.bincount(caption_image, minlength=n_images)
    if len(counts) > n_images or bool((counts == 0).any()):
        missing = torch.nonzero(counts[:n_images] == 0).flatten()[:5].tolist()
        raise ValueError(f"images {missing} have no caption (or a caption names an image out of range)")
    order = torch.argsort(caption_image, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(caption_image)) - starts[caption_image[order]]
    table = torch.full((n_images, int(counts.max())), -1, dtype=torch.long)
    table[caption_image[order], slot] = order
    return table


def retrieval_ranks(
    images: torch.Tensor,
    texts: torch.Tensor,
    caption_image: torch.Tensor,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based rank of the first correct item for every image query and every caption query.

    Args:
        images: ``(N, D)`` L2-normalised image embeddings.
        texts: ``(M, D)`` L2-normalised caption embeddings.
        caption_image: ``(M,)`` index of each caption's image.
        chunk_elements: Scores computed at once (memory bound).

    Returns:
        ``(image_to_text ranks (N,), text_to_image ranks (M,))`` as int64.
    """
    import torch

    images, texts = images.float(), texts.float()
    caption_image = caption_image.long()
    n_images, n_texts = len(images), len(texts)
    table = caption_table(caption_image, n_images)
    rows = max(1, chunk_elements // max(1, n_texts))
    text_index = torch.arange(n_texts)
    i2t = torch.empty(n_images, dtype=torch.long)
    gt_score = torch.empty(n_texts, dtype=images.dtype)
    for start in range(0, n_images, rows):
        stop = min(start + rows, n_images)
        scores = images[start:stop] @ texts.T
        caps = table[start:stop]
        own = scores.gather(1, caps.clamp(min=0)).masked_fill(caps < 0, float("-inf"))
        best_score = own.max(dim=1, keepdim=True).values
        best = torch.where(own == best_score, caps, -1).max(dim=1, keepdim=True).values  # tie: higher index
        i2t[start:stop] = position(scores, best_score, best, text_index)
        mine = (caption_image >= start) & (caption_image < stop)
        gt_score[mine] = scores[caption_image[mine] - start, text_index[mine]]
    above = torch.zeros(n_texts, dtype=torch.long)
    for start in range(0, n_images, rows):
        stop = min(start + rows, n_images)
        scores = images[start:stop] @ texts.T
        later = torch.arange(start, stop)[:, None] > caption_image[None, :]
        above += ((scores > gt_score) | ((scores == gt_score) & later)).sum(dim=0)
    return i2t, above


def position(
    scores: torch.Tensor, target_score: torch.Tensor, target: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """Per row: items scored above the target plus equal-scored items with a higher index."""
    ahead = (scores > target_score) | ((scores == target_score) & (index[None, :] > target))
    return ahead.sum(dim=1)


def recall_at(ranks: torch.Tensor, ks: Sequence[int] = KS) -> dict[int, float]:
    """Percentage of queries whose rank is below ``k``, for each ``k``."""
    return {k: 100.0 * float((ranks < k).double().mean()) for k in ks}


def retrieval_metrics(
    images: torch.Tensor,
    texts: torch.Tensor,
    caption_image: torch.Tensor,
    ks: Sequence[int] = KS,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict[str, float]:
    """``image_to_text.R@k``, ``text_to_image.R@k`` (in %) for each ``k`` and ``mean_recall``, their mean."""
    i2t, t2i = retrieval_ranks(images, texts, caption_image, chunk_elements)
    values = {f"image_to_text.R@{k}": v for k, v in recall_at(i2t, ks).items()}
    values |= {f"text_to_image.R@{k}": v for k, v in recall_at(t2i, ks).items()}
    values["mean_recall"] = sum(values.values()) / len(values)
    return values
