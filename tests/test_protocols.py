"""Protocol files as the schema: sources keyed by config paths, presets within config, deviations in records,
and the generated protocol sheet (benchmarks/PROTOCOLS.md) checked against what the code resolves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harmony_bench.cli import main
from harmony_bench.paths import REPO_ROOT, TASK_GROUPS
from harmony_bench.protocols import get_task, load_tasks, task_from_file
from harmony_bench.results import load_record
from harmony_bench.sources import MISSING, find_source, lookup, protocol_problems
from harmony_bench.yaml_io import DataFileError


def shipped_tasks():
    registry = load_tasks([REPO_ROOT / "benchmarks" / group for group in TASK_GROUPS])
    return [registry.get(name) for name in registry.names()]


def test_every_source_key_names_a_config_path_and_every_preset_key_exists():
    tasks = shipped_tasks()
    assert {t.name for t in tasks} >= {
        "imagenet-zeroshot",
        "imagenet-knn",
        "imagenet-linear",
        "ade20k",
        "coco",
    }
    for spec in tasks:
        assert protocol_problems(spec) == [], spec.name


def test_protocol_problems_name_the_bad_keys(tmp_path):
    data = {
        "name": "bad",
        "description": "a protocol with mistakes",
        "runner": "x:y",
        "protocol_version": "1",
        "dataset": {"name": "d"},
        "config": {"train": {"lr": 0.1, "epochs": 10}, "device": "auto", "cfg_options": {}},
        "presets": {"paper": {}, "fast": {"train": {"lr": 0.2, "warmup": 3}, "cfg_options": {"a.b.c": 1}}},
        "metrics": [{"name": "top1", "higher_is_better": True}],
        "sources": {"train": "somewhere", "optimizer": "free-form topic, not a path"},
        "preset_docs": {"fast": {"summary": "s", "sources": {"train.lr": "there", "train.nope": "?"}}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DataFileError, match=r"unknown key 'train\.warmup' in preset 'fast'"):
        task_from_file(path)  # a preset key that config lacks is refused when the file is read
    del data["presets"]["fast"]["train"]["warmup"]
    path.write_text(yaml.safe_dump(data))
    problems = "\n".join(protocol_problems(task_from_file(path)))
    assert "sets 'cfg_options.a.b.c'" not in problems  # below a free-form slot: any key
    assert "sources key 'optimizer' names no path" in problems
    assert "preset_docs.fast.sources key 'train.nope'" in problems
    assert "preset paper: 'device' has no source" in problems


def test_sources_longest_prefix_and_the_presets_first():
    task = {"train": "all of train", "train.lr": "the lr line"}
    preset = {"train.epochs": "the preset's command"}
    assert find_source("train.lr", [task]) == ("train.lr", "the lr line")
    assert find_source("train.lr_scaling", [task]) == ("train", "all of train")  # segments, not characters
    assert find_source("train.epochs", [preset, task]) == ("train.epochs", "the preset's command")
    assert find_source("eval", [preset, task]) is None
    config = {"cfg_options": {"model.backbone.img_size": 64}, "pipeline": [{"scale": 1}, {"scale": 2}]}
    assert lookup(config, "cfg_options.model.backbone.img_size") == 64  # a key holding dots
    assert lookup(config, "pipeline.1.scale") == 2 and lookup(config, "pipeline.2") is MISSING


def test_protocol_show_prints_sources_and_deviations(capsys):
    assert main(["protocol", "show", "imagenet-zeroshot", "--preset", "clip"]) == 0
    text = capsys.readouterr().out
    assert "transform.interpolation = bicubic" in text and "openai/CLIP@d05afc4 clip/clip.py:L79-L82" in text
    assert "# deviation: mean/std are the card's" in text
    assert main(["protocol", "show", "imagenet-zeroshot"]) == 0
    text = capsys.readouterr().out
    assert "transform.interpolation = bilinear" in text and "eval_zeroshot.py:L111-L114" in text


def test_the_record_carries_the_presets_deviations(toy_task, tmp_path, monkeypatch):
    from harmony_bench.protocols import task_registry

    path = Path(get_task("toy").path)
    data = yaml.safe_load(path.read_text())
    data["deviations"] = ["every preset: fp32"]
    data["preset_docs"] = {"smoke": {"summary": "tiny", "deviations": ["smoke: 3 images"]}}
    path.write_text(yaml.safe_dump(data))
    task_registry.cache_clear()
    out = tmp_path / "out"
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "toy", "--output", str(out)]
    assert main([*argv, "--preset", "smoke"]) == 0
    assert main(argv) == 0
    by_preset = {r["task"]["preset"]: r for r in map(load_record, sorted(out.glob("*.json")))}
    assert by_preset["smoke"]["task"]["deviations"] == ["every preset: fp32", "smoke: 3 images"]
    assert by_preset["paper"]["task"]["deviations"] == ["every preset: fp32"]


def test_old_records_without_deviations_still_validate(tmp_path):
    from datetime import datetime, timezone

    from harmony_bench.results import build_record, validate_record

    now = datetime.now(timezone.utc)
    task = {"name": "t", "protocol_version": "1", "preset": "paper", "config": {}}
    record = build_record(
        backbone={
            "name": "b",
            "card": None,
            "checkpoint": {"source": None, "sha256": None, "random_init": True},
        },
        task=task,
        dataset={"name": "d", "root": None, "synthetic": True, "manifest": None},
        seed=0,
        metrics={},
        start=now,
        end=now,
    )
    assert "deviations" not in record["task"] and validate_record(record) == []
    record["task"]["deviations"] = ["a reason"]
    assert validate_record(record) == []
    record["task"]["deviations"] = [3]
    assert validate_record(record)


def test_sheet_check_exits_1_when_stale_and_0_after_writing(tmp_path, monkeypatch, capsys):
    import harmony_bench.sheet as sheet

    text = {"now": "# Protocols\n\n| key | value | source |\n"}
    monkeypatch.setattr(sheet, "generate", lambda: text["now"])
    out = tmp_path / "PROTOCOLS.md"
    assert main(["protocol", "sheet", "--check", "--out", str(out)]) == 1  # missing
    assert main(["protocol", "sheet", "--out", str(out)]) == 0 and out.read_text() == text["now"]
    assert main(["protocol", "sheet", "--check", "--out", str(out)]) == 0
    text["now"] += "| `lr` | 8e-05 | README |\n"  # the code now resolves something else
    capsys.readouterr()
    assert main(["protocol", "sheet", "--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "+| `lr` | 8e-05 | README |" in err and "out of date" in err


# ------------------------------------------------------------------ mmengine protocol files (need mmengine)

# What every dense protocol file must cite (a key covering the path counts).
HEADLINE = {
    "ade20k": [
        "crop_size",
        "total_batch_size",
        "model.backbone.out_indices",
        "model.backbone.out_with_norm",
        "model.backbone.drop_path_rate",
        "model.backbone.img_size",
        "model.test_cfg",
        "optim_wrapper.optimizer.lr",
        "optim_wrapper.optimizer.weight_decay",
        "optim_wrapper.paramwise_cfg.layer_decay_rate",
        "param_scheduler",
        "train_cfg.max_iters",
        "train_cfg.val_interval",
        "train_dataloader.dataset.pipeline",
    ],
    "ade20k-linear": [  # frozen backbone, one optimizer group: no layer decay
        "crop_size",
        "total_batch_size",
        "model.backbone",
        "model.backbone.out_indices",
        "model.backbone.out_with_norm",
        "model.backbone.drop_path_rate",
        "model.backbone.img_size",
        "model.decode_head.in_channels",
        "model.decode_head.channels",
        "model.test_cfg",
        "optim_wrapper.optimizer.lr",
        "optim_wrapper.optimizer.weight_decay",
        "param_scheduler",
        "train_cfg.max_iters",
        "train_cfg.val_interval",
        "train_dataloader.dataset.pipeline",
    ],
    "coco": [
        "total_batch_size",
        "model.backbone.out_indices",
        "model.backbone.out_with_norm",
        "model.backbone.drop_path_rate",
        "model.backbone.img_size",
        "optim_wrapper.optimizer.lr",
        "optim_wrapper.optimizer.weight_decay",
        "optim_wrapper.paramwise_cfg.layer_decay_rate",
        "param_scheduler",
        "train_cfg.max_epochs",
        "train_dataloader.dataset.pipeline",
    ],
}


@pytest.mark.mm
@pytest.mark.parametrize("task", ["ade20k", "coco"])
def test_every_mm_source_key_names_a_path_of_its_file_and_the_headline_is_cited(task):
    from mmengine.config import Config

    from harmony_bench.dense.protocol import take_sources

    files = sorted((REPO_ROOT / "benchmarks" / task).glob("*.py"))
    assert files
    for path in files:
        cfg = Config.fromfile(str(path))
        sources = take_sources(cfg)
        assert sources and "sources" not in cfg, path.name
        plain = cfg.to_dict()
        for key in sources:
            assert lookup(plain, key) is not MISSING, f"{path.name}: sources key {key!r} is not a config path"
        if not path.name.startswith("_base_"):
            headline = HEADLINE["ade20k-linear" if path.name.startswith("linear_") else task]
            for key in headline:
                assert find_source(key, [sources]) is not None, f"{path.name}: {key} has no source"


@pytest.mark.mm
def test_committed_protocol_sheet_is_what_the_code_resolves():
    from harmony_bench.sheet import SHEET_PATH, stale

    diff = stale(SHEET_PATH)
    assert diff == [], "benchmarks/PROTOCOLS.md is stale: run `harmony-bench protocol sheet`\n" + "\n".join(
        diff[:40]
    )
    text = SHEET_PATH.read_text()
    for needle in (  # the fixes of issue 14, as the sheet shows them
        "### ade20k · paper (default) · ViT-B",
        "### ade20k · harmony-readme · ViT-B",
        "### coco · paper (default) · cascade-mask-rcnn 1x ViT-S",
        "## pretraining",
    ):
        assert needle in text


def test_sheet_renders_pretraining_sources_and_deviations_from_the_pretraining_files(tmp_path):
    """The sheet shows what ``pretrain.config.protocol_docs`` resolves: defaults' sources, per-method ones."""
    import shutil

    from harmony_bench.sheet import UNCITED, pretrain_blocks

    blocks, common = pretrain_blocks()  # the shipped files: every method, with citations
    assert {b.title for b in blocks} >= {"harmony", "clip", "slip", "maskclip", "ibot", "mae"}
    config_dir = tmp_path / "pretrain"
    shutil.copytree(REPO_ROOT / "benchmarks" / "pretrain", config_dir)
    defaults = yaml.safe_load((config_dir / "defaults.yaml").read_text())
    defaults["sources"] = {"optim": "Harmony main_harmony.py optimizer", "optim.lr": "README --lr"}
    defaults["deviations"] = ["bf16 instead of fp16"]
    (config_dir / "defaults.yaml").write_text(yaml.safe_dump(defaults, sort_keys=False))
    methods = yaml.safe_load((config_dir / "methods.yaml").read_text())
    methods["sources"] = {"slip.objectives.clip.max_logit_scale": "SLIP main.py clamp"}
    methods["deviations"] = {"slip": ["slip only"]}
    (config_dir / "methods.yaml").write_text(yaml.safe_dump(methods, sort_keys=False))
    blocks, common = pretrain_blocks(config_dir)
    assert common == ["bf16 instead of fp16"]
    rows = {b.title: {path: source for path, _, source in b.settings} for b in blocks}
    assert (
        rows["slip"]["optim.lr"] == "README --lr"
        and rows["slip"]["optim.eps"] == "Harmony main_harmony.py optimizer"
    )
    assert rows["slip"]["objectives.clip.max_logit_scale"] == "SLIP main.py clamp"
    assert rows["clip"]["objectives.clip.max_logit_scale"] == UNCITED
    assert "sources" not in rows["slip"] and not any(p.startswith("objectives.ibot") for p in rows["slip"])
    slip = next(b for b in blocks if b.title == "slip")
    assert slip.deviations[0] == "slip only" and "bf16 instead of fp16" not in slip.deviations
    # the opt-in fixes of upstream bugs are listed under the methods whose objectives they concern
    harmony = next(b for b in blocks if b.title == "harmony")
    assert any("decoder_pos_embed=sincos" in d for d in harmony.deviations)
    assert not any("decoder_pos_embed" in d for d in slip.deviations)
