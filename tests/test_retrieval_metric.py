"""Recall@k of the retrieval tasks against the reference rule, restated here, on hand-made score matrices."""

import numpy as np
import pytest
import torch

from harmony_bench.tasks.retrieval.metric import caption_table, retrieval_metrics, retrieval_ranks


def reference_metrics(scores_i2t: np.ndarray, img2txt: dict, txt2img: dict) -> dict:
    """Harmony eval/retrieval.py get_retrieval_metrics (L336-L383) written out, with its argsort made stable.

    The repo calls ``np.argsort(score)[::-1]``; ``kind="stable"`` fixes the order of equal scores to the one
    the harmony-bench rule promises (the later item first among equals).
    """
    ranks = np.zeros(scores_i2t.shape[0])
    for index, score in enumerate(scores_i2t):
        inds = np.argsort(score, kind="stable")[::-1]
        rank = 1e20
        for i in img2txt[index]:
            tmp = np.where(inds == i)[0][0]
            rank = min(rank, tmp)
        ranks[index] = rank
    i2t = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    scores_t2i = scores_i2t.T
    ranks = np.zeros(scores_t2i.shape[0])
    for index, score in enumerate(scores_t2i):
        inds = np.argsort(score, kind="stable")[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    t2i = [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]
    result = {f"image_to_text.R@{k}": v for k, v in zip((1, 5, 10), i2t, strict=True)}
    result |= {f"text_to_image.R@{k}": v for k, v in zip((1, 5, 10), t2i, strict=True)}
    result["mean_recall"] = (sum(i2t) / 3 + sum(t2i) / 3) / 2
    return result


def clip_benchmark_recall(scores_t2i: torch.Tensor, positives: torch.Tensor, k: int) -> float:
    """CLIP_benchmark's recall_at_k (any positive in the top k), restated; for untied scores only."""
    top = scores_t2i.topk(min(k, scores_t2i.shape[1]), dim=1).indices
    return 100.0 * positives.gather(1, top).any(dim=1).float().mean().item()


def from_scores(scores: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(image "embeddings", text "embeddings") whose product is exactly ``scores``: (scores, identity)."""
    return torch.tensor(scores, dtype=torch.float32), torch.eye(scores.shape[1])


def owners(counts: list[int]) -> list[int]:
    return [image for image, count in enumerate(counts) for _ in range(count)]


def maps(caption_image: list[int]) -> tuple[dict, dict]:
    img2txt: dict = {}
    for t, i in enumerate(caption_image):
        img2txt.setdefault(i, []).append(t)
    return img2txt, dict(enumerate(caption_image))


def check_against_reference(
    scores: np.ndarray, caption_image: list[int], chunk_elements: int = 1 << 24
) -> None:
    images, texts = from_scores(scores)
    ours = retrieval_metrics(images, texts, torch.tensor(caption_image), chunk_elements=chunk_elements)
    reference = reference_metrics(scores.astype(np.float32), *maps(caption_image))
    assert ours.keys() == reference.keys()
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name


def test_all_tied_scores_rank_the_later_item_first():
    """Two images with two captions each, every score equal: the stable-descending order is 3, 2, 1, 0."""
    scores = np.zeros((2, 4), dtype=np.float32)
    i2t, t2i = retrieval_ranks(*from_scores(scores), torch.tensor([0, 0, 1, 1]))
    assert i2t.tolist() == [
        2,
        0,
    ]  # image 0's best caption (1) sits behind 3 and 2; image 1's caption 3 is first
    assert t2i.tolist() == [1, 1, 0, 0]  # image 1 comes before image 0
    check_against_reference(scores, [0, 0, 1, 1])


def test_five_captions_per_image_hand_made():
    """Three images with five captions each; ranks worked out by hand."""
    scores = np.array(
        [
            # captions of image 0 | image 1 | image 2
            [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.8, 0.2, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3],
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.1, 0.1, 0.1, 0.1, 0.45],
        ],
        dtype=np.float32,
    )
    caption_image = owners([5, 5, 5])
    i2t, t2i = retrieval_ranks(*from_scores(scores), torch.tensor(caption_image))
    # image 0: caption 0 is the best score -> rank 0; image 1: caption 5 scores 0.9 -> 0;
    # image 2: its best caption (14, 0.45) is behind the ten captions scored 0.5 and 0.6 -> 10
    assert i2t.tolist() == [0, 0, 10]
    # caption 1 scores (0.1, 0.1, 0.5) for images 0, 1, 2: image 2 first, then the tie 0.1 with the later
    # image (1) before image 0 -> rank 2.  Captions 7 and 8: image 0 (0.7, 0.8) and image 2 (0.6) beat image 1
    assert t2i[:5].tolist() == [0, 2, 1, 1, 1]
    assert t2i[5:10].tolist() == [0, 0, 2, 2, 1]
    assert t2i[10:].tolist() == [1, 1, 1, 1, 0]
    check_against_reference(scores, caption_image)
    metrics = retrieval_metrics(*from_scores(scores), torch.tensor(caption_image))
    assert metrics["image_to_text.R@1"] == pytest.approx(200 / 3)
    assert metrics["image_to_text.R@10"] == pytest.approx(200 / 3)  # rank 10 is not < 10
    assert metrics["text_to_image.R@1"] == pytest.approx(100 * 4 / 15)
    assert metrics["text_to_image.R@5"] == 100.0


@pytest.mark.parametrize("seed", range(4))
def test_random_scores_with_ties_and_uneven_captions_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    counts = list(rng.integers(1, 8, size=23))
    # scores on a coarse grid make many exact ties; the reference order among them is the stable one
    scores = rng.integers(0, 6, size=(23, sum(counts))).astype(np.float32) / 5
    check_against_reference(scores, owners(counts))
    check_against_reference(scores, owners(counts), chunk_elements=37)  # several chunks, ragged last one


def test_distinct_scores_match_clip_benchmarks_top_k_rule():
    rng = np.random.default_rng(7)
    counts = [5] * 30
    scores = rng.standard_normal((30, 150)).astype(np.float32)
    images, texts = from_scores(scores)
    metrics = retrieval_metrics(images, texts, torch.tensor(owners(counts)))
    positives = torch.zeros(150, 30, dtype=torch.bool)
    positives[torch.arange(150), torch.tensor(owners(counts))] = True
    scores_t2i = torch.tensor(scores).T
    for k in (1, 5, 10):
        assert metrics[f"text_to_image.R@{k}"] == pytest.approx(
            clip_benchmark_recall(scores_t2i, positives, k)
        )
        assert metrics[f"image_to_text.R@{k}"] == pytest.approx(
            clip_benchmark_recall(scores_t2i.T, positives.T, k)
        )


def test_normalised_embeddings_give_perfect_recall_when_each_image_matches_its_captions():
    images = torch.nn.functional.normalize(
        torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    caption_image = torch.tensor(owners([5] * 6))
    texts = images[caption_image] + 0.01 * torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    metrics = retrieval_metrics(images, torch.nn.functional.normalize(texts, dim=-1), caption_image)
    assert metrics["mean_recall"] == 100.0


def test_an_image_without_captions_is_refused():
    with pytest.raises(ValueError, match=r"images \[1\] have no caption"):
        caption_table(torch.tensor([0, 0, 2]), 3)
    table = caption_table(torch.tensor([2, 0, 1, 0, 2]), 3)
    assert table.tolist() == [[1, 3], [2, -1], [0, 4]]
