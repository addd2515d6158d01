"""The loader's guarantees: no silent partial loads, pos-embed resizing, random init, lazy imports."""

import subprocess
import sys

import pytest
import torch

from harmony_bench import list_backbones, load_backbone
from harmony_bench.models.report import IncompleteLoadError

from ._models_util import TINY_VIT, images, max_abs, reference_vit


@pytest.fixture
def teacher_file(tmp_path):
    reference = reference_vit()
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    return reference, path


def test_partial_load_fails_naming_the_keys(tmp_path, teacher_file):
    reference, _ = teacher_file
    state = reference.state_dict()
    del state["blocks.1.mlp.fc2.weight"], state["norm.bias"]
    path = tmp_path / "partial.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(
        IncompleteLoadError, match=r"2 backbone tensors.*blocks\.1\.mlp\.fc2\.weight.*norm\.bias"
    ):
        load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)
    backbone = load_backbone(
        "ibot-vit-b16-in1k", str(path), allow_missing=["blocks.*.mlp.fc2.weight", "norm.*"], **TINY_VIT
    )
    assert backbone.report.missing == ["blocks.1.mlp.fc2.weight", "norm.bias"]
    assert "allowed missing 2" in backbone.report.summary


def test_unexpected_and_mis_shaped_keys_fail(tmp_path, teacher_file):
    reference, _ = teacher_file
    extra = tmp_path / "extra.pth"
    torch.save({"state_dict": {**reference.state_dict(), "blocks.0.ls1.gamma": torch.ones(64)}}, extra)
    with pytest.raises(IncompleteLoadError, match=r"no place in the model: blocks\.0\.ls1\.gamma"):
        load_backbone("ibot-vit-b16-in1k", str(extra), **TINY_VIT)
    wide = tmp_path / "wide.pth"
    torch.save({"state_dict": reference_vit(embed_dim=96, num_heads=2).state_dict()}, wide)
    with pytest.raises(
        IncompleteLoadError, match=r"shape mismatches.*cls_token \[1, 1, 96\] vs model \[1, 1, 64\]"
    ):
        load_backbone("ibot-vit-b16-in1k", str(wide), **TINY_VIT)


def test_pos_embed_resize_to_512(tmp_path):
    tiny = {**TINY_VIT, "img_size": 64, "patch_size": 16}  # a 4x4 grid, like a 224-px checkpoint's 14x14
    reference = reference_vit(**tiny)
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = load_backbone("ibot-vit-b16-in1k", str(path), **{**tiny, "img_size": 512})
    assert backbone.report.resized == {"pos_embed": ([1, 17, 64], [1, 1025, 64])}
    reference.set_input_size(img_size=(512, 512))  # timm's own bicubic resampling of the same table
    assert max_abs(backbone.model.pos_embed, reference.pos_embed) <= 1e-6
    x = images(n=1, size=512)
    with torch.no_grad():
        maps = backbone.features(x, [0, 1], norm=True)
        assert [m.shape for m in maps] == [(1, 64, 32, 32)] * 2
        assert (
            max_abs(maps, reference.forward_intermediates(x, [0, 1], norm=True, intermediates_only=True))
            <= 1e-5
        )
    assert backbone.preprocess.transforms[1].size == (512, 512)


def test_tiny_card_random_init_is_reproducible():
    first, second = load_backbone("vit-tiny-random"), load_backbone("vit-tiny-random")
    assert first.report.random_init and "random init" in first.report.summary
    x = images(size=64)
    with torch.no_grad():
        assert torch.equal(first.embed_image(x), second.embed_image(x))
        assert first.embed_image(x).shape == first.embed_text(["a cat", "a dog"]).shape == (2, 32)
        assert first.pooled(x, "cls+avgpool").shape == (2, 128)
        assert [f.shape for f in first.features(x)] == [(2, 64, 8, 8)] * 2


def test_vision_only_backbone_has_no_text(teacher_file):
    _, path = teacher_file
    backbone = load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)
    with pytest.raises(ValueError, match="vision-only"):
        backbone.embed_text(["a photo of a cat"])
    with pytest.raises(ValueError, match="pool mode"):
        backbone.pooled(images(), "max")


def test_every_card_builds_its_architecture():
    """Each card names a valid timm model, overrides, converter and text tower (built on meta)."""
    import timm

    from harmony_bench.cards import get_card
    from harmony_bench.models.build import build_text_model, timm_kwargs
    from harmony_bench.models.converters import CONVERTERS

    for name in list_backbones():
        card = get_card(name)
        if not card.random_init:
            assert card.checkpoint["converter"] in CONVERTERS, name
            CONVERTERS.get(card.checkpoint["converter"])
        with torch.device("meta"):
            model = timm.create_model(card.timm_model, pretrained=False, **timm_kwargs(card))
            if card.text_tower:
                build_text_model(card.text_tower)
        if card.family == "slip" and "vit-s16" in name:
            assert model.blocks[0].attn.num_heads == 12


def test_import_harmony_bench_stays_light():
    code = "import harmony_bench, sys; harmony_bench.list_backbones(); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'torch'" not in loaded and "'timm'" not in loaded and "'mmcv'" not in loaded
