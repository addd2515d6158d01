"""Feature variants and the k-NN vote, checked against direct computations (the linear heads: see
``test_imagenet_linear_engine.py``)."""

import torch
import torch.nn.functional as F

from harmony_bench import load_backbone
from harmony_bench.tasks.imagenet.features import FeatureSpec, Variant, batch_features, variant_features
from harmony_bench.tasks.imagenet.knn import knn_scores

CPU = torch.device("cpu")


def test_variants_match_the_backbone_pooling_and_last_blocks():
    backbone = load_backbone("vit-tiny-random").eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    variants = [Variant.parse(n) for n in ("cls", "avgpool", "cls+avgpool", "cls2", "cls2+avgpool")]
    with torch.no_grad():
        store = batch_features(backbone, x, FeatureSpec.covering(variants))
        for name in ("cls", "avgpool", "cls+avgpool"):
            expected = backbone.pooled(x, name)
            assert torch.allclose(variant_features(store, Variant.parse(name)), expected, atol=1e-5), name
        last2 = variant_features(store, Variant.parse("cls2+avgpool"))
    assert last2.shape == (3, 3 * 64)
    assert torch.allclose(last2[:, 64:128], backbone.pooled(x, "cls"), atol=1e-5)  # last block's cls second


def test_knn_vote_equals_a_direct_loop():
    generator = torch.Generator().manual_seed(0)
    train = F.normalize(torch.randn(50, 8, generator=generator), dim=1)
    labels = torch.randint(0, 4, (50,), generator=generator)
    query = F.normalize(torch.randn(6, 8, generator=generator), dim=1)
    scores = knn_scores(train, labels, query, [3, 10], temperature=0.07, n_classes=4)
    for k in (3, 10):
        for row in range(6):
            similarity = train @ query[row]
            nearest = similarity.argsort(descending=True)[:k]
            expected = torch.zeros(4)
            for index in nearest:
                expected[labels[index]] += torch.exp(similarity[index] / 0.07)
            assert torch.allclose(scores[k][row], expected, rtol=1e-5)
