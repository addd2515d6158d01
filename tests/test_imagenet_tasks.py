"""imagenet-linear / -knn / -zeroshot end to end through the CLI on synthetic data; the feature cache."""

from pathlib import Path

import pytest
import torch

from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.results import validate_record

from ._imagenet_util import (
    TINY_PREPROCESSING,
    copy_tree,
    dump,
    run_cli,
    truncate,
    use_cards,
    value,
    write_card,
)
from ._models_util import TINY_VIT, perturb, reference_vit

CHANCE = 10.0  # the synthetic ImageNet has 10 classes


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The default synthetic ImageNet (80 train / 20 val images, 64 px), shared by the module's tests."""
    return synthesize("imagenet", tmp_path_factory.mktemp("imagenet") / "root").root


@pytest.fixture(autouse=True)
def no_global_cache(monkeypatch):
    monkeypatch.delenv("HARMONY_BENCH_CACHE", raising=False)


def test_linear_smoke_learns_on_augmented_views_and_reports_the_best_epoch(root, tmp_path):
    out = tmp_path / "records"
    record = run_cli("imagenet-linear", root, out)
    assert validate_record(record) == []
    assert record["status"]["state"] == "completed" and record["dataset"]["synthetic"] is True
    # Random-init features of the synthetic shapes are linearly separable enough: measured 65-75 % over 3
    # data seeds with augmented training views (chance 10 %).
    assert value(record, "top1") >= 4 * CHANCE, dump(record)
    grid = record["metrics"]["grid"]
    assert set(grid) == {"cls", "cls+avgpool"} and set(grid["cls"]) == {"lr_0p01", "lr_0p1", "lr_1"}
    final = max(cell["top1"]["value"] for cells in grid.values() for cell in cells.values())
    assert value(record, "final_top1") == final  # the grid is the last epoch's
    history = record["metrics"]["history"]
    assert len(history) == 5  # evaluated after every epoch (Harmony --val_freq 1)
    assert value(record, "top1") == max(row["top1"]["value"] for row in history.values()) >= final
    best = f"epoch_{int(value(record, 'best_epoch')):03d}"
    assert history[best]["top1"]["value"] == value(record, "top1")
    assert value(record, "data.train_images") == 80 and value(record, "data.val_corrupt_images") == 0
    assert record["task"]["config"]["train"]["epochs"] == 5  # the resolved smoke protocol is recorded
    assert record["task"]["config"]["mode"] == "augmented"
    assert record["artifacts"]["feature_cache_hits"] == "none" and record["artifacts"]["mode"] == "augmented"
    assert "feature_cache_key_train" not in record["artifacts"]  # train features are never cached
    assert (out / "feature-cache" / f"{record['artifacts']['feature_cache_key_val']}.pt").is_file()


def test_linear_cached_mode_caches_train_features_and_its_preset_is_a_recorded_deviation(root, tmp_path):
    out = tmp_path / "records"
    record = run_cli("imagenet-linear", root, out, "--set", "mode=cached", "--set", "features.storage=fp16")
    assert record["status"]["state"] == "completed" and record["artifacts"]["mode"] == "cached"
    assert value(record, "top1") >= 4 * CHANCE, dump(record)
    assert len(record["artifacts"]["feature_cache_key_train"]) == 64
    again = run_cli("imagenet-linear", root, out, "--set", "mode=cached", "--set", "features.storage=fp16")
    assert again["artifacts"]["feature_cache_hits"] == "train,val"
    deviations = get_task("imagenet-linear").deviations_for("fast")
    assert any("no RandomResizedCrop/flip augmentation" in d for d in deviations)
    assert not any("no RandomResizedCrop" in d for d in get_task("imagenet-linear").deviations_for("paper"))


def test_linear_rerun_resumes_and_another_config_is_refused(root, tmp_path, capsys):
    out = tmp_path / "records"
    first = run_cli("imagenet-linear", root, out, "--set", "train.epochs=2")
    again = run_cli("imagenet-linear", root, out, "--set", "train.epochs=2")
    assert again["artifacts"]["resumed_from_epoch"] == "2"  # finished: reported again without training
    assert again["metrics"]["top1"] == first["metrics"]["top1"]
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "imagenet-linear", "--preset", "smoke"]
    argv += ["--data-root", str(root), "--output", str(out), "--set", "train.epochs=3"]
    assert main(argv) == 2
    assert "train.epochs: 2 (checkpoint) vs 3 (this run)" in capsys.readouterr().err


def test_knn_smoke_learns_and_the_second_run_hits_the_cache(root, tmp_path):
    out = tmp_path / "records"
    first = run_cli("imagenet-knn", root, out)
    assert validate_record(first) == []
    # measured 45-75 % top-1 (5-NN) over 6 data seeds with 20 val images (chance 10 %)
    assert value(first, "top1") >= 3 * CHANCE, dump(first)
    assert set(first["metrics"]["per_k"]) == {"k1", "k5", "k10", "k20"}
    assert value(first, "top1") == value(first, "per_k.k5.top1")
    second = run_cli("imagenet-knn", root, out)
    assert second["artifacts"]["feature_cache_hits"] == "train,val"
    assert second["artifacts"]["feature_cache_key_train"] == first["artifacts"]["feature_cache_key_train"]
    assert second["metrics"] == first["metrics"]
    third = run_cli("imagenet-knn", root, out, "--set", "transform.crop=56")  # another transform: a new key
    assert third["artifacts"]["feature_cache_hits"] == "none"
    assert third["artifacts"]["feature_cache_key_val"] != first["artifacts"]["feature_cache_key_val"]


def test_different_checkpoint_gives_a_different_cache_key(root, tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    name = write_card(
        cards,
        "ibot-vit-b16-in1k",
        "tiny-ibot",
        architecture={"overrides": {**TINY_VIT, "qkv_bias": True}},
        preprocessing=TINY_PREPROCESSING,
    )
    use_cards(monkeypatch, cards)
    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.save({"state_dict": reference_vit().state_dict()}, first)
    torch.save({"state_dict": perturb(reference_vit(), seed=5).state_dict()}, second)
    out = tmp_path / "records"
    runs = [
        run_cli("imagenet-knn", root, out, "--checkpoint", str(path), backbone=name)
        for path in (first, first, second)
    ]
    keys = [run["artifacts"]["feature_cache_key_val"] for run in runs]
    hits = [run["artifacts"]["feature_cache_hits"] for run in runs]
    assert keys[0] == keys[1] != keys[2]
    assert hits == ["none", "train,val", "none"]
    random_init = run_cli("imagenet-knn", root, out)
    assert random_init["artifacts"]["feature_cache_key_val"] not in keys


def test_zeroshot_smoke_on_random_init_writes_a_valid_record(root, tmp_path):
    record = run_cli("imagenet-zeroshot", root, tmp_path / "records")
    assert validate_record(record) == []
    recall = record["metrics"]["per_class_recall"]
    assert len(recall) == 10 and "n90000000" in recall
    assert 0 <= value(record, "top1") <= value(record, "top5") <= 100
    assert record["task"]["config"]["templates"] == "slip-imagenet-7"


def test_corrupt_images_are_counted_and_listed(root, tmp_path):
    damaged = copy_tree(root, tmp_path / "damaged")
    bad = [
        damaged / "train" / "n90000003" / "n90000003_00002.JPEG",
        damaged / "val" / "n90000001" / "n90000001_00000.JPEG",
    ]
    for path in bad:
        truncate(path)
    record = run_cli("imagenet-linear", damaged, tmp_path / "records")
    assert record["status"]["state"] == "completed"
    assert value(record, "data.train_corrupt_images") == 1 and value(record, "data.val_corrupt_images") == 1
    assert value(record, "data.train_images") == 79 and value(record, "data.val_images") == 19
    listing = Path(record["artifacts"]["corrupt_images"]).read_text()
    assert all(str(path) in listing for path in bad)
    # a rerun (resumed from the finished run, val features from the cache) still reports them
    again = run_cli("imagenet-linear", damaged, tmp_path / "records")
    assert again["artifacts"]["feature_cache_hits"] == "val"
    assert value(again, "data.train_corrupt_images") == 1
    # cached mode, started over: the second run takes train features from the cache, never reading the images
    run_cli("imagenet-linear", damaged, tmp_path / "cached", "--set", "mode=cached")
    cached = run_cli("imagenet-linear", damaged, tmp_path / "cached", "--set", "mode=cached", "--no-resume")
    assert cached["artifacts"]["feature_cache_hits"] == "train,val"
    assert value(cached, "data.train_corrupt_images") == 1 and value(cached, "data.train_images") == 79


@pytest.mark.parametrize("task", ["imagenet-linear", "imagenet-knn", "imagenet-zeroshot"])
def test_missing_dataset_is_a_usage_error(task, tmp_path, capsys):
    out = tmp_path / "records"
    argv = ["run", "--backbone", "vit-tiny-random", "--task", task, "--data-root", str(tmp_path / "nowhere")]
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "harmony-bench data synth --kind imagenet" in err
    assert "Traceback" not in err
    assert not list(out.glob("*.json"))  # the run never started: no record
    assert main(["run", "--backbone", "vit-tiny-random", "--task", task, "--output", str(out)]) == 2
    assert "no ImageNet root given (--data-root DIR)" in capsys.readouterr().err


def test_zeroshot_needs_a_text_tower(root, tmp_path, capsys):
    argv = ["run", "--backbone", "ibot-vit-b16-in1k", "--task", "imagenet-zeroshot", "--data-root", str(root)]
    assert main([*argv, "--output", str(tmp_path)]) == 2
    assert "has no text tower" in capsys.readouterr().err


@pytest.mark.slow
def test_linear_under_torchrun_writes_one_record_over_the_whole_split(root, tmp_path):
    """2 gloo processes share every global batch and evaluate on all val features: one record."""
    import os
    import subprocess
    import sys

    import torch.distributed as dist

    from harmony_bench.results import load_record

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path / "records"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    argv = ["-m", "harmony_bench", "run", "--backbone", "vit-tiny-random", "--task", "imagenet-linear"]
    argv += ["--preset", "smoke", "--data-root", str(root), "--output", str(out), "--set", "train.epochs=3"]
    result = subprocess.run([*launcher, *argv], env=dict(os.environ), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    (path,) = out.glob("*.json")
    record = load_record(path)
    assert record["status"]["state"] == "completed"
    assert value(record, "data.train_images") == 80 and value(record, "data.val_images") == 20
    assert len(record["metrics"]["history"]) == 3


def test_linear_resume_checks_the_checkpoint_itself_not_only_its_sidecar(root, tmp_path, capsys):
    """A crash between the two writes can leave run A's heads beside run B's sidecar: B must not resume."""
    import shutil

    run_cli("imagenet-linear", root, tmp_path / "a", "--set", "train.epochs=1")
    run_cli("imagenet-linear", root, tmp_path / "b", "--set", "train.epochs=2")
    (work_a,) = (tmp_path / "a" / "work").iterdir()
    (work_b,) = (tmp_path / "b" / "work").iterdir()
    shutil.copy(work_b / "linear-checkpoint.json", work_a / "linear-checkpoint.json")
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "imagenet-linear", "--preset", "smoke"]
    argv += ["--data-root", str(root), "--output", str(tmp_path / "a"), "--set", "train.epochs=2"]
    assert main(argv) == 2
    assert "holds a linear-probe checkpoint made under a different configuration" in capsys.readouterr().err
