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

    wide = torch.randn(2, 3, 64, 96)
    for family, name in tiny_cards.items():
        side = 56 if family == "dinov2" else 64  # the card's 64 px grid: 4 x 4 patches of 14 or 16
        square = torch.randn(2, 3, side, side)
        adapter = MODELS.build(dict(type="RegistryBackbone", backbone=name, out_indices=[0, 1, 2, 3]))
        adapter.init_weights()  # must keep the loaded weights
        adapter.eval()
        # on the card's own patch grid (the learned position grid as it is) the maps are the registry's
        dynamic = {"dynamic_img_size": True, "dynamic_img_pad": True}
        reference = load_backbone(name, **({} if family == "swin" else dynamic))
        with torch.no_grad():
            maps = adapter(square)
            expected = reference.features(square, [0, 1, 2, 3])
        assert len(maps) == 4, family
        for got, want in zip(maps, expected, strict=True):
            assert got.ndim == 4 and got.shape == want.shape, family
            assert (got - want).abs().max().item() <= 1e-6, family
        if family == "swin":
            assert [m.shape[1] for m in maps] == [16, 32, 64, 128]
            assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # 64 px in patches of 4
        else:
            with torch.no_grad():
                maps = adapter(wide)  # another grid: the learned one interpolated (see the tests below)
            grid = (5, 7) if family == "dinov2" else (4, 6)  # 64 x 96 px in patches of 14 (padded) or 16
            assert all(m.shape[1:] == (32, *grid) for m in maps), family


def _ibot_load_resample(pos_embed, old, new):
    """bytedance/ibot@da316d8 evaluation/object_detection/mmcv_custom/checkpoint.py:L439-L462, written out."""
    import torch.nn.functional as F

    extra, tokens = pos_embed[:, :1], pos_embed[:, 1:]
    tokens = tokens.reshape(-1, old, old, pos_embed.shape[-1]).permute(0, 3, 1, 2)
    tokens = F.interpolate(tokens, size=new, mode="bicubic", align_corners=False)
    return torch.cat((extra, tokens.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)


def _ibot_forward_interpolate(pos_embed, grid, height, width, patch=16):
    """bytedance/ibot@da316d8 evaluation/object_detection/mmcv_custom/register_backbone.py:L152-L172."""
    import torch.nn.functional as F

    w0, h0 = height // patch, width // patch
    if (w0, h0) == tuple(grid):
        return pos_embed
    class_pos, patch_pos = pos_embed[:, 0], pos_embed[:, 1:]
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos = F.interpolate(
        patch_pos.reshape(1, grid[0], grid[1], pos_embed.shape[-1]).permute(0, 3, 1, 2),
        scale_factor=(w0 / grid[0], h0 / grid[1]),
        mode="bicubic",
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).view(1, -1, pos_embed.shape[-1])
    return torch.cat((class_pos.unsqueeze(0), patch_pos), dim=1)


def test_position_embeddings_are_resampled_once_to_img_size_and_trained_there(tiny_cards):
    """iBOT/Harmony: the checkpoint grid resampled to the img_size grid at load, a trainable parameter."""
    from harmony_bench.dense.adapter import RegistryBackbone

    name = tiny_cards["ibot"]  # 64 px card: a 4 x 4 grid in the checkpoint
    stored = load_backbone(name).model.pos_embed.detach()
    adapter = RegistryBackbone(name, out_indices=[0], img_size=(128, 160))  # (H, W) as upstream's img_size
    pos = adapter.model.pos_embed
    assert isinstance(pos, torch.nn.Parameter) and pos.requires_grad and pos.shape == (1, 1 + 8 * 10, 32)
    assert torch.allclose(pos.detach(), _ibot_load_resample(stored, 4, (8, 10)), atol=1e-6, rtol=0)
    assert dict(adapter.named_parameters())["model.pos_embed"] is pos  # the optimizer trains this grid
    square = RegistryBackbone(name, out_indices=[0], img_size=512)  # ADE20K: 512 -> 32 x 32
    assert square.model.pos_embed.shape == (1, 1 + 32 * 32, 32)


def test_inputs_of_another_grid_interpolate_the_learned_grid_as_upstream(tiny_cards):
    from harmony_bench.dense.adapter import RegistryBackbone

    adapter = RegistryBackbone(tiny_cards["ibot"], out_indices=[0], img_size=(128, 160)).eval()
    model = adapter.model
    for height, width in ((96, 192), (128, 160)):  # a detector batch; the training grid itself
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            (got,) = adapter(x)
            tokens = model.patch_embed(x)  # NHWC
            batch, rows, cols, channels = tokens.shape
            pos = _ibot_forward_interpolate(model.pos_embed, (8, 10), height, width)
            seq = (
                torch.cat([model.cls_token.expand(batch, -1, -1), tokens.reshape(batch, -1, channels)], 1)
                + pos
            )
            out = model.blocks[0](model.norm_pre(seq))
            want = out[:, 1:].reshape(batch, rows, cols, channels).permute(0, 3, 1, 2)
        assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-6, (height, width)


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


class _Segmentor(torch.nn.Module):
    """What the constructor sees: ``backbone`` + a head (names as in an mmseg/mmdet model)."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decode_head = torch.nn.Conv2d(32, 4, 1)


def _groups(constructor_cfg: dict, model: torch.nn.Module) -> dict[int, tuple[float, float]]:
    """``{id(param): (lr, weight_decay)}`` of the optimizer the constructor builds."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

    optim = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05))
    # an earlier mmdet run in this process leaves "mmdet" as the default scope, whose constructor of
    # the same name is ConvNeXt-only: look names up in mmseg's registry explicitly
    with DefaultScope.overwrite_default_scope("mmseg"):
        constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(optim_wrapper_cfg=optim, **constructor_cfg))
    wrapper = constructor(model)
    return {id(p): (g["lr"], g["weight_decay"]) for g in wrapper.optimizer.param_groups for p in g["params"]}


def test_layer_decay_equals_mmseg_beit_constructor_on_the_same_parameters(tiny_cards):
    """Our timm-name rule gives every parameter the lr and weight decay mmseg's BEiT rule gives it.

    mmseg's ``LearningRateDecayOptimizerConstructor`` (BEiT's, which iBOT's configs use) only knows
    ``backbone.layers.N`` names under a class called ``*MAE*``/``*BEiT*``; a view of the same parameter
    objects under those names lets it run on our backbone, and the two optimizers are compared param by param.
    """
    from harmony_bench.dense import register_into
    from harmony_bench.dense.adapter import RegistryBackbone

    register_into("mmseg")
    ours = _Segmentor(RegistryBackbone(tiny_cards["ibot"], out_indices=[0, 1, 2, 3]))
    vit = ours.backbone.model

    class MAEView(torch.nn.Module):  # mmseg's names for the same parameter objects
        def __init__(self):
            super().__init__()
            self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
            self.patch_embed, self.layers, self.norm = vit.patch_embed, vit.blocks, vit.norm

    reference = _Segmentor(MAEView())
    reference.decode_head = ours.decode_head
    decay = dict(num_layers=4, layer_decay_rate=0.5)
    got = _groups(dict(type="TimmLayerDecayOptimizerConstructor", paramwise_cfg=decay), ours)
    want = _groups(
        dict(
            type="LearningRateDecayOptimizerConstructor",
            paramwise_cfg=dict(num_layers=4, decay_rate=0.5, decay_type="layer_wise"),
        ),
        reference,
    )
    assert len(got) == len(list(ours.parameters())) and got.keys() == want.keys()
    for param_id, (lr, wd) in want.items():
        assert got[param_id] == (pytest.approx(lr), wd)
    by_name = {name: got[id(p)] for name, p in ours.named_parameters()}
    assert by_name["backbone.model.pos_embed"] == (pytest.approx(0.5**5), 0.05)  # decayed, as BEiT runs it
    assert by_name["backbone.model.blocks.3.mlp.fc1.bias"] == (pytest.approx(0.5), 0.0)
    assert by_name["decode_head.weight"] == (1.0, 0.05)


def test_layer_decay_refuses_fewer_layers_than_blocks(tiny_cards):
    from harmony_bench.dense import register_into
    from harmony_bench.dense.adapter import RegistryBackbone

    register_into("mmseg")
    model = _Segmentor(RegistryBackbone(tiny_cards["ibot"], out_indices=[0, 1, 2, 3]))
    cfg = dict(
        type="TimmLayerDecayOptimizerConstructor", paramwise_cfg=dict(num_layers=2, layer_decay_rate=0.5)
    )
    with pytest.raises(ValueError, match="num_layers is 2"):
        _groups(cfg, model)
