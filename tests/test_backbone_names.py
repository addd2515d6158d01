"""``--backbone`` as people type it: card names, family aliases, card files, pretraining folders, the user's
backbone store, ``timm:`` / ``open_clip:`` / ``hf-hub:`` models (offline: from hub caches these tests write),
the card that fits a wrong container, and smoke runs without ``--data-root``.  No test touches the network
(conftest sets HF_HUB_OFFLINE and gives each test an empty hub cache and store)."""

import json
import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from harmony_bench import load_backbone, store
from harmony_bench.cards import backbone_registry
from harmony_bench.cli import main
from harmony_bench.models.checkpoint_io import CheckpointError, sha256_of
from harmony_bench.models.hub_files import HubFileMissing
from harmony_bench.models.names import NoWeightsError, resolve_backbone
from harmony_bench.registry import UnknownNameError

from ._models_util import compare_vision, max_abs, perturb, reference_vit, report
from .conftest import REPO_ROOT
from .test_models_clip import compare, tiny_open_clip
from .test_models_ssl import full_checkpoint

TINY_TIMM_ARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}


def hub_repo(repo: str, files: dict[str, bytes | Path], revision: str = "0123abcd" * 5) -> Path:
    """A Hugging Face hub cache entry as huggingface_hub lays it out (refs/main -> snapshots/<commit>/)."""
    folder = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    for name, data in files.items():
        target = snapshot / name
        target.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
    return snapshot


def tiny_card_dir(tmp_path, monkeypatch, cards: dict[str, str], aliases: str = "") -> Path:
    """Copies of shipped cards with a tiny ViT, registered through $HARMONY_BENCH_BACKBONES."""
    folder = tmp_path / "cards"
    folder.mkdir()
    for new, original in cards.items():
        text = (REPO_ROOT / "backbones" / f"{original}.yaml").read_text()
        text = text.replace(f"name: {original}", f"name: {new}")
        text = text.replace(
            "    embed_dim: 768\n", "    embed_dim: 64\n    img_size: 32\n    patch_size: 8\n"
        )
        text = text.replace("    depth: 12\n", "    depth: 2\n").replace(
            "    num_heads: 12\n", "    num_heads: 2\n"
        )
        (folder / f"{new}.yaml").write_text(text)
    if aliases:
        (folder / "_aliases.yaml").write_text(aliases)
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(folder))
    backbone_registry.cache_clear()
    from harmony_bench.cards import backbone_aliases

    backbone_aliases.cache_clear()
    return folder


# --------------------------------------------------------------------------- cards and aliases


def test_card_names_resolve_to_themselves():
    resolved = resolve_backbone("ibot-vit-b16-in1k")
    assert (
        resolved.card.name == "ibot-vit-b16-in1k" and resolved.how == "card" and resolved.checkpoint is None
    )


def test_family_aliases_name_the_reference_cards_and_are_listed(capsys):
    expected = {"clip": "clip-vit-b16-openai", "ibot": "ibot-vit-b16-in1k", "mae": "mae-vit-b16-in1k",
                "dino": "dino-vit-b16-in1k", "dinov2": "dinov2-vit-b14-lvd142m", "swin": "swin-b-p4w7-in1k",
                "slip": "slip-vit-b16-yfcc15m-25ep"}  # fmt: skip
    for alias, card in expected.items():
        resolved = resolve_backbone(alias)
        assert resolved.card.name == card and resolved.how == "alias", alias
        assert card in resolved.notes[0]
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "family aliases" in out and "harmony-vit-s16-cc3m" in out and "ViT-S/16 pretrained on CC3M" in out
    assert "timm:NAME[.TAG]" in out and "open_clip:ARCH/TAG" in out and "hf-hub:ORG/NAME" in out
    assert main(["list", "backbones", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {a["alias"] for a in listing["aliases"]} >= {"harmony", "clip", "maskclip", "ibot", "mae"}


def test_harmony_without_weights_exits_2_naming_both_ways(capsys):
    with pytest.raises(NoWeightsError):
        resolve_backbone("harmony")
    assert main(["run", "--backbone", "harmony", "--task", "ade20k", "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "harmony-bench pretrain --method harmony --preset smoke --output" in err
    assert "--checkpoint OUTPUT_DIR/main_vit_checkpoint.pth" in err and "MohammedSB/Harmony" in err
    assert not list(Path(os.environ["HARMONY_BENCH_RESULTS"]).glob("*.json"))  # no record for a non-run


def test_alias_with_a_checkpoint_picks_the_family_card_that_loads_it(tmp_path, monkeypatch, capsys):
    aliases = "tinyibot: {card: ibot-tiny, family: ibot, means: tiny iBOT}\n"
    tiny_card_dir(
        tmp_path,
        monkeypatch,
        {"ibot-tiny": "ibot-vit-b16-in1k", "ibot-tiny-full": "ibot-vit-b16-in1k-full"},
        aliases,
    )
    teacher = reference_vit()
    bare = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": teacher.state_dict()}, bare)
    assert resolve_backbone("tinyibot", str(bare)).card.name == "ibot-tiny"
    full = tmp_path / "checkpoint.pth"
    torch.save(full_checkpoint(teacher, perturb(reference_vit(), seed=7), "ibot_loss"), full)
    resolved = resolve_backbone("tinyibot", str(full))
    assert resolved.card.name == "ibot-tiny-full"
    assert "loads cleanly into ibot-tiny-full" in resolved.notes[0]
    compare_vision(load_backbone(resolved.card, str(full)), teacher, "alias-picks-full-card")


def test_unknown_names_list_the_forms():
    with pytest.raises(UnknownNameError) as info:
        resolve_backbone("harmoni")
    message = str(info.value)
    assert (
        "Did you mean 'harmony'" in message and "timm:NAME[.TAG]" in message and "hf-hub:ORG/NAME" in message
    )


# --------------------------------------------------------------------------- store, card files, run folders


def fake_export(folder: Path, name: str = "pretrained-harmony-run1") -> tuple[Path, Path]:
    """A `harmony-bench pretrain` export (card + safetensors): vit-tiny-random's network as its weights."""
    export = folder / "export"
    export.mkdir(parents=True)
    text = (REPO_ROOT / "backbones" / "vit-tiny-random.yaml").read_text()
    text = text.replace("name: vit-tiny-random", f"name: {name}").replace("family: tiny", "family: harmony")
    text = text.replace("format: random-init\n  converter: null", "format: safetensors\n  converter: timm")
    text = text.replace("tags: [tiny, random-init, smoke]", "tags: [harmony-bench-pretrain, harmony]")
    card = export / f"{name}.yaml"
    card.write_text(text)
    backbone = load_backbone("vit-tiny-random")
    tensors = {k: v.contiguous() for k, v in backbone.model.state_dict().items()}
    tensors.update({f"text.{k}": v.contiguous() for k, v in backbone.text_model.state_dict().items()})
    weights = export / f"{name}.safetensors"
    save_file(tensors, str(weights))
    return card, weights


def test_store_registers_exports_and_harmony_uses_the_newest(tmp_path, capsys, toy_task):
    old_card, old_weights = fake_export(tmp_path / "runs" / "run1")
    new_card, new_weights = fake_export(tmp_path / "runs" / "run2", "pretrained-harmony-run2")
    store.register_export(old_card, old_weights, tmp_path / "runs" / "run1", "harmony", 10)
    store.register_export(new_card, new_weights, tmp_path / "runs" / "run2", "harmony", 20)
    resolved = resolve_backbone("harmony")
    assert resolved.card.name == "pretrained-harmony-run2" and resolved.checkpoint == str(new_weights)
    assert (
        "newest harmony export" in resolved.notes[0] and str(tmp_path / "runs" / "run2") in resolved.notes[0]
    )
    assert resolve_backbone("pretrained-harmony-run1").checkpoint == str(
        old_weights
    )  # by its registered name

    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    assert "pretrained-harmony-run1" in out and str(tmp_path / "runs" / "run1") in out

    assert main(["run", "--backbone", "harmony", "--task", toy_task]) == 0
    captured = capsys.readouterr()
    assert "newest harmony export in the backbone store, pretrained-harmony-run2" in captured.err
    record = json.loads(Path(captured.out.split("result record: ")[1].strip()).read_text())
    assert record["backbone"]["name"] == "pretrained-harmony-run2"
    assert record["backbone"]["checkpoint"]["sha256"] == sha256_of(new_weights)

    new_weights.unlink()  # a deleted run folder: the older export is the newest usable one
    assert resolve_backbone("harmony").card.name == "pretrained-harmony-run1"


def test_run_folder_and_card_file_paths(tmp_path):
    card, weights = fake_export(tmp_path / "runs" / "mine")
    by_folder = resolve_backbone(str(tmp_path / "runs" / "mine"))
    assert by_folder.card.name == "pretrained-harmony-run1" and by_folder.checkpoint == str(weights)
    by_file = resolve_backbone(str(card))
    assert by_file.card == by_folder.card and by_file.checkpoint == str(weights)
    with pytest.raises(FileNotFoundError, match="without a harmony-bench export"):
        resolve_backbone(str(tmp_path))
    with pytest.raises(ValueError, match="a checkpoint goes to --checkpoint"):
        resolve_backbone(str(weights))


def test_pretrain_cli_registers_its_export(tmp_path, capsys):
    from harmony_bench.cli.pretrain_cmd import register_in_store

    card, weights = fake_export(tmp_path / "a" / "run")
    register_in_store(card, weights, tmp_path / "a" / "run", "harmony", 5)
    other_card, other_weights = fake_export(tmp_path / "b" / "run")  # same folder name -> same card name
    register_in_store(other_card, other_weights, tmp_path / "b" / "run", "harmony", 7)
    out = capsys.readouterr().out
    assert f"in the backbone store {store.backbones_dir()}" in out
    assert f"replaces the entry of the same name from {(tmp_path / 'a' / 'run').resolve()}" in out
    assert [e.step for e in store.entries()] == [7]


def test_store_home_defaults_to_the_xdg_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("HARMONY_BENCH_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.home() == tmp_path / "xdg" / "harmony-bench"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert store.home() == Path.home() / ".local" / "share" / "harmony-bench"


# --------------------------------------------------------------------------- timm, open_clip, hf-hub


def test_timm_names_generate_a_card_from_timms_pretrained_config():
    card = resolve_backbone("timm:vit_tiny_patch16_224").card
    cfg = timm.models.get_pretrained_cfg("vit_tiny_patch16_224")
    assert card.name == f"timm:vit_tiny_patch16_224.{cfg.tag}"  # the default tag, written out
    assert card.preprocessing["mean"] == list(cfg.mean) and card.preprocessing["std"] == list(cfg.std)
    assert card.preprocessing["resize"] == int(224 / cfg.crop_pct) and card.preprocessing["crop"] == 224
    assert card.architecture["overrides"] == {"embed_dim": 192, "depth": 12, "num_heads": 3}
    assert card.checkpoint["converter"] == "timm-pretrained" and card.text_tower is None
    with pytest.raises(UnknownNameError, match="no pretrained tag 'nope'.*augreg_in21k"):
        resolve_backbone("timm:vit_tiny_patch16_224.nope")
    with pytest.raises(ValueError, match="is a ResNet; harmony-bench evaluates ViTs"):
        resolve_backbone("timm:resnet18")


def test_timm_offline_without_cache_exits_2_naming_the_download(capsys, toy_task):
    with pytest.raises(HubFileMissing) as info:
        resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k", fetch=True)
    message = str(info.value)
    assert "hf download timm/vit_tiny_patch16_224.augreg_in21k model.safetensors" in message
    assert (
        str(Path(os.environ["HF_HUB_CACHE"]) / "models--timm--vit_tiny_patch16_224.augreg_in21k") in message
    )
    assert "--checkpoint FILE" in message
    assert main(["run", "--backbone", "timm:vit_tiny_patch16_224.augreg_in21k", "--task", toy_task]) == 2
    assert "hf download" in capsys.readouterr().err
    assert not list(Path(os.environ["HARMONY_BENCH_RESULTS"]).glob("*.json"))  # never a random-init record


def test_timm_weights_from_the_hub_cache_load_exactly_and_go_into_the_record(capsys, toy_task):
    torch.manual_seed(0)
    reference = perturb(timm.create_model("vit_tiny_patch16_224", num_classes=21843))  # in21k head
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    snapshot = hub_repo("timm/vit_tiny_patch16_224.augreg_in21k", {})
    save_file(state, str(snapshot / "model.safetensors"))
    resolved = resolve_backbone("timm:vit_tiny_patch16_224.augreg_in21k", fetch=True)
    assert resolved.card.checkpoint["sha256"] == sha256_of(snapshot / "model.safetensors")
    assert resolved.card.checkpoint["files"]["revision"] == snapshot.name
    backbone = load_backbone(resolved.card)
    assert set(backbone.report.dropped) == {"head.weight", "head.bias"}
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        report("timm-hub", cls=max_abs(backbone.pooled(x, "cls"), reference.forward_features(x)[:, 0]))

    assert main(["run", "--backbone", "timm:vit_tiny_patch16_224.augreg_in21k", "--task", toy_task]) == 0
    out = capsys.readouterr().out
    record = json.loads(Path(out.split("result record: ")[1].strip()).read_text())
    assert record["backbone"]["name"] == "timm:vit_tiny_patch16_224.augreg_in21k"
    assert record["backbone"]["card"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert record["backbone"]["checkpoint"]["sha256"] == sha256_of(snapshot / "model.safetensors")


def test_timm_checkpoint_file_is_a_timm_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = perturb(timm.create_model("vit_tiny_patch16_224", num_classes=1000))
    path = tmp_path / "vit_tiny.pth"
    torch.save(reference.state_dict(), path)
    card = resolve_backbone("timm:vit_tiny_patch16_224", str(path)).card
    backbone = load_backbone(card, str(path))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        report("timm-checkpoint", cls=max_abs(backbone.pooled(x, "cls"), reference.forward_features(x)[:, 0]))
    torch.save({"not": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="timm could not load this file"):
        load_backbone(card, str(tmp_path / "other.pth"))


def test_hf_hub_timm_repo(tmp_path):
    reference = perturb(timm.create_model("vit_tiny_patch16_224", num_classes=0, **TINY_TIMM_ARGS))
    config = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": 0,
        "model_args": TINY_TIMM_ARGS,
        "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 1.0,
                           "crop_mode": "center", "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2],
                           "classifier": "head"},
    }  # fmt: skip
    snapshot = hub_repo("someone/tiny-vit", {"config.json": json.dumps(config).encode()})
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()}, str(snapshot / "model.safetensors")
    )
    resolved = resolve_backbone("hf-hub:someone/tiny-vit", fetch=True)
    card = resolved.card
    assert card.architecture["timm_model"] == "vit_tiny_patch16_224"
    assert card.preprocessing == {"input_size": 32, "resize": 32, "crop": 32, "interpolation": "bilinear",
                                  "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}  # fmt: skip
    compare_vision(load_backbone(card), reference, "hf-hub-timm")


def test_open_clip_names_and_hub_repos(tmp_path):
    card = resolve_backbone("open_clip:ViT-B-16/laion2b_s34b_b88k").card
    assert card.text_tower is not None and card.text_tower["width"] == 512
    assert (
        card.architecture["overrides"]["act_layer"] == "gelu" and card.architecture["projection_dim"] == 512
    )
    assert (
        resolve_backbone("open_clip:ViT-B-16/openai").card.architecture["overrides"]["act_layer"]
        == "quick_gelu"
    )
    with pytest.raises(UnknownNameError, match="needs a pretrained tag.*laion2b_s34b_b88k"):
        resolve_backbone("open_clip:ViT-B-16")
    with pytest.raises(ValueError, match="ModifiedResNet"):
        resolve_backbone("open_clip:RN50/openai")

    reference = tiny_open_clip(quick_gelu=True)
    vision = {"layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "image_size": 32}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
    preprocess = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    config = {
        "model_cfg": {"embed_dim": 16, "quick_gelu": True, "vision_cfg": vision, "text_cfg": text},
        "preprocess_cfg": {**preprocess, "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    snapshot = hub_repo("someone/tiny-clip", {"open_clip_config.json": json.dumps(config).encode()})
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(snapshot / "open_clip_model.safetensors"))
    resolved = resolve_backbone("hf-hub:someone/tiny-clip", fetch=True)
    assert resolved.card.family == "clip" and resolved.card.text_tower["layers"] == 2
    backbone = load_backbone(resolved.card)
    compare(backbone, reference, "hf-hub-open-clip")
    assert (
        resolve_backbone("open_clip:hf-hub:someone/tiny-clip").card.architecture == resolved.card.architecture
    )


def test_hf_hub_repo_offline_without_cache_names_the_repository():
    with pytest.raises(HubFileMissing, match=r"hf download someone/absent.*models--someone--absent"):
        resolve_backbone("hf-hub:someone/absent")


def test_backbones_show_takes_any_name(capsys):
    assert main(["backbones", "show", "timm:vit_tiny_patch16_224.augreg_in21k", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resolved"]["cached"] is False and "hf download" in data["resolved"]["first run"]
    assert data["name_resolution"]["as"] == "hub"
    assert main(["backbones", "show", "clip"]) == 0
    assert "clip-vit-b16-openai" in capsys.readouterr().out
    assert main(["backbones", "show", "harmony"]) == 0  # no weights yet: show says so instead of failing
    assert "harmony-vit-s16-cc3m, no weights yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- the card that fits


def test_wrong_container_error_names_the_card_that_fits(tmp_path, monkeypatch):
    tiny_card_dir(
        tmp_path, monkeypatch, {"ibot-tiny": "ibot-vit-b16-in1k", "ibot-tiny-full": "ibot-vit-b16-in1k-full"}
    )
    teacher = reference_vit()
    full = tmp_path / "checkpoint.pth"
    torch.save(full_checkpoint(teacher, perturb(reference_vit(), seed=7), "ibot_loss"), full)
    with pytest.raises(CheckpointError) as info:
        load_backbone("ibot-tiny", str(full))
    message = str(info.value)
    assert "expects a top-level 'state_dict'" in message  # the accurate error stays
    assert "This file is what ibot-tiny-full reads" in message and "use --backbone ibot-tiny-full" in message
    bare = tmp_path / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict()}, bare)
    with pytest.raises(CheckpointError, match="use --backbone ibot-tiny\\."):
        load_backbone("ibot-tiny-full", str(bare))
    junk = tmp_path / "junk.pth"
    torch.save({"model": {"x": torch.zeros(2)}}, junk)
    with pytest.raises(
        CheckpointError, match="No card loads .* cleanly either; `harmony-bench backbones inspect"
    ):
        load_backbone("ibot-tiny", str(junk))


def test_harmony_main_vit_alone_serves_image_tasks(tmp_path):
    from .test_models_harmony import KW, harmony_parts

    teacher, projection, main_vit, _ = harmony_parts()
    path = tmp_path / "main_vit_checkpoint.pth"
    torch.save(main_vit, path)
    backbone = load_backbone("harmony-vit-b16-cc3m", str(path), **KW)
    assert backbone.text_model is None and not backbone.report.missing
    compare_vision(backbone, teacher, "harmony-main-vit-only", projection=projection)
    with pytest.raises(ValueError, match="loaded without its text tower.*main_text_checkpoint.pth"):
        backbone.embed_text(["a photo"])


# --------------------------------------------------------------------------- smoke runs without --data-root


def test_a_smoke_run_refused_by_its_checks_writes_no_synthetic_dataset(capsys, toy_task, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    argv = ["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--preset", "smoke"]
    assert main([*argv, "--output", str(tmp_path / "a-file" / "records")]) == 2
    assert "cannot be created" in capsys.readouterr().err
    assert not (Path(os.environ["HARMONY_BENCH_HOME"]) / "synth").exists()


def test_smoke_preset_without_data_root_writes_the_synthetic_dataset_once(capsys, toy_task):
    assert main(["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--preset", "smoke"]) == 0
    captured = capsys.readouterr()
    root = Path(os.environ["HARMONY_BENCH_HOME"]) / "synth" / "imagenet-g1-seed0"
    assert f"no --data-root: the smoke preset runs on synthetic imagenet data (wrote {root}" in captured.err
    record = json.loads(Path(captured.out.split("result record: ")[1].strip()).read_text())
    assert record["dataset"]["root"] == str(root) and record["dataset"]["synthetic"]
    assert (root / "harmony_bench_synth.json").is_file()
    stamp = (root / "harmony_bench_synth.json").stat().st_mtime_ns
    assert (
        main(["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--preset", "smoke", "--seed", "1"])
        == 0
    )
    assert f"(using {root}" in capsys.readouterr().err
    assert (root / "harmony_bench_synth.json").stat().st_mtime_ns == stamp  # written once
    assert (
        main(["run", "--backbone", "vit-tiny-random", "--task", toy_task]) == 0
    )  # not smoke: no data made up
    assert "no --data-root" not in capsys.readouterr().err


@pytest.mark.slow
def test_timm_checkpoint_runs_imagenet_knn_smoke_end_to_end(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "vit_tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224").state_dict(), path)
    args = ["run", "--backbone", "timm:vit_tiny_patch16_224", "--task", "imagenet-knn", "--preset", "smoke"]
    assert main([*args, "--checkpoint", str(path)]) == 0
    record = json.loads(Path(capsys.readouterr().out.split("result record: ")[1].strip()).read_text())
    assert record["status"]["state"] == "completed" and record["dataset"]["synthetic"]
    assert record["backbone"]["card"]["checkpoint"]["converter"] == "timm-pretrained"
    assert record["backbone"]["checkpoint"]["sha256"] == sha256_of(path)


def test_suites_record_the_card_a_name_resolves_to():
    from harmony_bench.suites.plan import card_name

    assert card_name("ibot") == "ibot-vit-b16-in1k"
    cfg = timm.models.get_pretrained_cfg("vit_tiny_patch16_224")
    assert card_name("timm:vit_tiny_patch16_224") == f"timm:vit_tiny_patch16_224.{cfg.tag}"
    assert card_name("no-such-backbone") == "no-such-backbone"  # the cell's run says what is wrong
