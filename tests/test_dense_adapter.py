"""The dense backbone adapter: shapes for every family, equality with the registry, layer decay."""

from __future__ import annotations

import pytest
import torch

from harmony_bench.cards import backbone_registry
from harmony_bench.models import load_backbone
from tests._dense_util import write_tiny_cards

pytestmark = pytest.mark.mm


@pytest.fixture(scope="module")
def tiny_cards(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    names = write_tiny_cards(tmp_path_factory.mktemp("cards"), monkeypatch)
    yield names
    monkeypatch.undo()
    backbone_registry.cache_clear()


def test_every_family_gives_four_nchw_maps_equal_to_the_registry_backbone(tiny_cards):
    from harmony_bench.dense import register_into

    register_into("mmseg")
    from mmseg.registry import MODELS

    x = torch.randn(2, 3, 64, 96)
    for family, name in tiny_cards.items():
        adapter = MODELS.build(dict(type="RegistryBackbone", backbone=name, out_indices=[0, 1, 2, 3]))
        adapter.init_weights()  # must keep the loaded weights
        adapter.eval()
        with torch.no_grad():
            maps = adapter(x if family != "swin" else x[..., :64])
        assert len(maps) == 4, family
        dynamic = {"dynamic_img_size": True, "dynamic_img_pad": True}
        reference = load_backbone(name, **({} if family == "swin" else dynamic))
        with torch.no_grad():
            expected = reference.features(x if family != "swin" else x[..., :64], [0, 1, 2, 3])
        for got, want in zip(maps, expected, strict=True):
            assert got.ndim == 4 and got.shape == want.shape, family
            assert (got - want).abs().max().item() <= 1e-6, family
        if family == "swin":
            assert [m.shape[1] for m in maps] == [16, 32, 64, 128]
            assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]
        else:
            grid = (5, 7) if family == "dinov2" else (4, 6)  # 64 x 96 px in patches of 14 (padded) or 16
            assert all(m.shape[1:] == (32, *grid) for m in maps), family


def test_repeated_indices_and_out_with_norm(tiny_cards):
    from harmony_bench.dense.adapter import RegistryBackbone

    name = tiny_cards["ibot"]
    adapter = RegistryBackbone(name, out_indices=[1, 1, 3, 3], out_with_norm=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = adapter(x)
        normed = load_backbone(name).features(x, [1, 3], norm=True)
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[2], maps[3])
    assert (maps[0] - normed[0]).abs().max() <= 1e-6 and (maps[3] - normed[1]).abs().max() <= 1e-6


def test_layer_decay_groups_follow_the_ibot_rule(tiny_cards):
    from harmony_bench.dense import register_into
    from harmony_bench.dense.adapter import RegistryBackbone

    register_into("mmseg")
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

    class Segmentor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = RegistryBackbone(tiny_cards["ibot"], out_indices=[0, 1, 2, 3])
            self.decode_head = torch.nn.Conv2d(32, 4, 1)

    model = Segmentor()
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type="TimmLayerDecayOptimizerConstructor",
            optim_wrapper_cfg=dict(
                type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05)
            ),
            paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.5),
        )
    )
    wrapper = constructor(model)
    by_name = {n: g for g in wrapper.optimizer.param_groups for n in g["param_names"]}
    assert by_name["backbone.model.pos_embed"]["lr"] == pytest.approx(0.5**5)  # layer 0 of 0..5
    assert by_name["backbone.model.pos_embed"]["weight_decay"] == 0.0
    assert by_name["backbone.model.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(0.5**4)
    assert by_name["backbone.model.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.05
    assert by_name["backbone.model.blocks.3.mlp.fc1.bias"]["weight_decay"] == 0.0
    assert by_name["backbone.model.norm.weight"]["lr"] == pytest.approx(1.0)
    assert by_name["decode_head.weight"]["lr"] == pytest.approx(1.0)
    assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == len(list(model.parameters()))
