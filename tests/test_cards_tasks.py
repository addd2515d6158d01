import re

import pytest

from harmony_bench.cards import card_from_file, get_card, list_cards, load_cards
from harmony_bench.protocols import deep_merge, get_task
from harmony_bench.registry import UnknownNameError
from harmony_bench.yaml_io import DataFileError

from .conftest import REPO_ROOT


def test_every_shipped_card_parses():
    cards = list_cards()
    files = {p.stem for p in (REPO_ROOT / "backbones").glob("*.yaml") if not p.name.startswith("_")}
    assert {c.name for c in cards} == files
    tiny = get_card("vit-tiny-random")
    assert tiny.random_init and tiny.text_tower is not None
    assert tiny.timm_model == "vit_tiny_patch16_224"


def test_card_typo_is_an_error(tmp_path):
    source = (REPO_ROOT / "backbones" / "vit-tiny-random.yaml").read_text()
    bad = tmp_path / "vit-tiny-random.yaml"
    bad.write_text(source.replace("preprocessing:", "preprocesing:"))
    with pytest.raises(
        DataFileError, match="missing keys \\['preprocessing'\\].*unknown keys \\['preprocesing'\\]"
    ):
        card_from_file(bad)


def test_card_with_a_published_block_is_an_error(tmp_path):
    """Published numbers have one home, results/reported/published.csv: a card may not carry its own copy."""
    source = (REPO_ROOT / "backbones" / "vit-tiny-random.yaml").read_text()
    bad = tmp_path / "vit-tiny-random.yaml"
    bad.write_text(source + "published:\n  imagenet_linear_top1: 12.3\n  source: somewhere\n")
    with pytest.raises(DataFileError, match="`published:` is not a card key.*results/reported/published.csv"):
        card_from_file(bad)
    broken = {}  # in a user card directory the card is skipped, its error kept for when it is asked for
    assert "vit-tiny-random" not in load_cards([tmp_path], broken)
    assert "results/reported/published.csv" in str(broken["vit-tiny-random"])


def test_no_shipped_card_has_a_published_block():
    for path in sorted((REPO_ROOT / "backbones").glob("*.yaml")):
        assert not re.search(r"^published:", path.read_text(), re.MULTILINE), path.name


def test_card_name_must_match_file(tmp_path):
    source = (REPO_ROOT / "backbones" / "vit-tiny-random.yaml").read_text()
    (tmp_path / "other.yaml").write_text(source)
    with pytest.raises(DataFileError, match="must equal the file name"):
        load_cards([tmp_path])


def test_duplicate_card_across_dirs(tmp_path):
    source = (REPO_ROOT / "backbones" / "vit-tiny-random.yaml").read_text()
    (tmp_path / "vit-tiny-random.yaml").write_text(source)
    with pytest.raises(DataFileError, match="defined twice"):
        load_cards([tmp_path, REPO_ROOT / "backbones"])


def test_unknown_backbone_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'vit-tiny-random'"):
        get_card("vit-tiny-randm")


def test_unknown_task_suggests_available(toy_task):
    with pytest.raises(UnknownNameError, match="Did you mean 'ade20k'"):
        get_task("ade2k")
    assert get_task("toy").protocol_version == "1"


def test_presets_deep_merge(toy_task):
    spec = get_task(toy_task)
    assert spec.resolve_config(None) == {"score": 10, "explode": False, "nested": {"a": 1, "b": 2}}
    assert spec.resolve_config("smoke")["nested"] == {"a": 1, "b": 3}
    assert spec.resolve_config("smoke", {"nested": {"a": 7}})["nested"] == {"a": 7, "b": 3}
    with pytest.raises(UnknownNameError, match="Did you mean 'smoke'"):
        spec.resolve_config("smok")


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1}}
    merged = deep_merge(base, {"a": {"c": 2}})
    assert base == {"a": {"b": 1}} and merged == {"a": {"b": 1, "c": 2}}
