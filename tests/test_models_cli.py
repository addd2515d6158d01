"""``harmony-bench backbones list|show|inspect|convert``."""

import json

import pytest
import torch
from safetensors.torch import load_file

from harmony_bench import load_backbone
from harmony_bench.cards import backbone_registry, list_cards
from harmony_bench.cli import main

from ._models_util import TINY_VIT, images, max_abs, reference_vit
from .conftest import REPO_ROOT

TINY_IBOT_CARD = (REPO_ROOT / "backbones" / "ibot-vit-b16-in1k.yaml").read_text()


@pytest.fixture
def tiny_card(tmp_path, monkeypatch):
    """An iBOT card with a tiny architecture, registered through $HARMONY_BENCH_BACKBONES."""
    cards = tmp_path / "cards"
    cards.mkdir()
    text = TINY_IBOT_CARD.replace("name: ibot-vit-b16-in1k", "name: ibot-vit-tiny-test")
    text = text.replace("    embed_dim: 768\n", "    embed_dim: 64\n    img_size: 32\n    patch_size: 8\n")
    text = text.replace("    depth: 12\n", "    depth: 2\n").replace(
        "    num_heads: 12\n", "    num_heads: 2\n"
    )
    (cards / "ibot-vit-tiny-test.yaml").write_text(text)
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(cards))
    backbone_registry.cache_clear()
    reference = reference_vit()
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    return reference, path


def test_list_shows_every_card(capsys):
    assert main(["backbones", "list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {c.name for c in list_cards()}
    assert main(["backbones", "list"]) == 0
    assert "slip-vit-s16-yfcc15m-25ep" in capsys.readouterr().out


def test_show_resolves_the_cache_path(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HARMONY_BENCH_CACHE", str(tmp_path))
    assert main(["backbones", "show", "mae-vit-b16-in1k", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resolved"]["cache_path"] == str(
        tmp_path / "dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth"
    )
    assert main(["backbones", "show", "mae-vit-b16-inlk"]) == 2
    assert "Did you mean 'mae-vit-b16-in1k'" in capsys.readouterr().err


def test_inspect_names_the_cards_that_fit(tiny_card, capsys):
    _, path = tiny_card
    assert main(["backbones", "inspect", str(path), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["container"] == {"state_dict": "mapping of 30 entries (30 tensors, 113,600 values)"}
    assert info["parameters"] == 113_600
    verdicts = {row["card"]: row for row in info["cards"]}
    assert verdicts["ibot-vit-tiny-test"]["status"] == "clean"
    assert (
        verdicts["ibot-vit-b16-in1k"]["status"] == "no"
        and "shape mismatches" in verdicts["ibot-vit-b16-in1k"]["detail"]
    )
    assert "expects a top-level 'model'" in verdicts["mae-vit-b16-in1k"]["detail"]
    assert main(["backbones", "inspect", str(path)]) == 0
    assert "ibot-vit-tiny-test" in capsys.readouterr().out


def test_convert_exports_timm_safetensors(tiny_card, tmp_path, capsys):
    reference, path = tiny_card
    out = tmp_path / "ibot.safetensors"
    assert (
        main(["backbones", "convert", "ibot-vit-tiny-test", "--checkpoint", str(path), "--out", str(out)])
        == 0
    )
    assert "loaded 30/30 tensors" in capsys.readouterr().out
    exported = load_file(str(out))
    assert set(exported) == set(reference.state_dict())
    assert (
        main(["backbones", "convert", "ibot-vit-tiny-test", "--checkpoint", str(path), "--out", str(out)])
        == 2
    )
    assert "refusing to overwrite" in capsys.readouterr().err
    import timm

    model = timm.create_model("vit_base_patch16_224", num_classes=0, **TINY_VIT)
    model.load_state_dict(exported)
    x = images()
    with torch.no_grad():
        assert max_abs(model.forward_features(x), reference.forward_features(x)) == 0
    assert load_backbone("ibot-vit-tiny-test", str(path)).report.sha256


def test_untrusted_checkpoint_is_a_user_error(tmp_path, capsys):
    import fractions

    path = tmp_path / "odd.pth"
    torch.save({"model": {}, "extra": fractions.Fraction(1, 2)}, path)
    assert main(["backbones", "inspect", str(path)]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
