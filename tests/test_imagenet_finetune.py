"""imagenet-finetune via the CLI on synthetic data (learning, record, resume, refusal); recipe parts."""

import json
import shutil
from pathlib import Path

import pytest

from harmony_bench import events
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.results import load_record, validate_record
from harmony_bench.tasks.imagenet import finetune, finetune_recipe

TASK = "imagenet-finetune"
BACKBONE = "vit-tiny-random"
CHANCE = 10.0  # the synthetic ImageNet has 10 classes
EPOCHS = 16  # the smoke preset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Synthetic ImageNet with 160 train / 40 val images (64 px), shared by the module's tests."""
    return synthesize("imagenet", tmp_path_factory.mktemp("imagenet") / "root", n=160).root


def cli_run(root: Path, output: Path, *extra: str) -> int:
    argv = ["run", "--backbone", BACKBONE, "--task", TASK, "--preset", "smoke", "--data-root", str(root)]
    return main([*argv, "--output", str(output), *extra])


def records(output: Path) -> list[dict]:
    return [load_record(path) for path in sorted(output.glob("*.json"))]


def work_dir(output: Path) -> Path:
    return output / "work" / f"{BACKBONE}__{TASK}__seed0"


@pytest.fixture(scope="module")
def reference(root, tmp_path_factory):
    """One uninterrupted smoke run: ``(record, output dir)``."""
    output = tmp_path_factory.mktemp("reference")
    assert cli_run(root, output) == 0
    (record,) = records(output)
    return record, output


def test_smoke_finetune_learns_and_writes_a_valid_record(reference):
    record, output = reference
    assert validate_record(record) == []
    assert record["status"]["state"] == "completed" and record["dataset"]["synthetic"] is True
    metrics = record["metrics"]
    # Measured final top-1 on 40 val images: 40-70 % over 8 data/run seeds, 55 % for seed 0 (chance 10 %).
    assert metrics["top1"]["value"] >= 3 * CHANCE, json.dumps(metrics)[:2000]
    assert metrics["top5"]["value"] >= metrics["top1"]["value"]
    history = metrics["history"]
    assert list(history) == [f"epoch_{e:03d}" for e in range(1, EPOCHS + 1)]
    best = max(row["top1"]["value"] for row in history.values())
    assert metrics["best_top1"]["value"] == best
    assert history[f"epoch_{int(metrics['best_epoch']['value']):03d}"]["top1"]["value"] == best
    assert history[f"epoch_{EPOCHS:03d}"]["top1"] == metrics["top1"]
    lrs = [row["lr"]["value"] for row in history.values()]
    assert lrs[1] > lrs[-1] and lrs[-1] < 1e-4  # warmup then cosine towards min_lr
    assert (
        metrics["data"]["train_images"]["value"] == 160
        and metrics["data"]["val_corrupt_images"]["value"] == 0
    )
    assert record["task"]["config"]["schedule"]["epochs"] == EPOCHS
    artifacts = record["artifacts"]
    assert artifacts["resumed_from_epoch"] == "0" and artifacts["schedule_step"] == "iteration"
    assert artifacts["precision"] == "fp32"  # the CPU ignores amp: bf16
    assert Path(artifacts["checkpoint"]) == work_dir(output) / "finetune-checkpoint.pt"
    sidecar = json.loads((work_dir(output) / "finetune-checkpoint.json").read_text())
    assert sidecar["epoch"] == EPOCHS and sidecar["identity_hash"] == artifacts["run_identity_hash"]


@pytest.mark.slow
def test_resume_after_an_interruption_repeats_the_uninterrupted_run(root, reference, tmp_path, capsys):
    expected, _ = reference
    output = tmp_path / "out"

    def crash(epoch, work_dir):
        if epoch == 0:
            raise RuntimeError("simulated crash after the first epoch")

    with events.subscribed("epoch_end", crash):
        assert cli_run(root, output) == 1
    (failed,) = records(output)
    assert failed["status"]["state"] == "failed" and "simulated crash" in failed["status"]["error"]["message"]
    assert json.loads((work_dir(output) / "finetune-checkpoint.json").read_text())["epoch"] == 1
    capsys.readouterr()

    assert cli_run(root, output) == 0
    resumed = next(r for r in records(output) if r["status"]["state"] == "completed")
    assert resumed["artifacts"]["resumed_from_epoch"] == "1"
    assert resumed["artifacts"]["run_identity_hash"] == expected["artifacts"]["run_identity_hash"]
    assert resumed["metrics"] == expected["metrics"]  # exact: every epoch's loss, lr, top-1 and top-5


def test_a_checkpoint_of_another_configuration_is_refused(root, reference, capsys):
    _, output = reference
    before = records(output)
    assert cli_run(root, output, "--set", "optim.lr=0.001") == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "config.optim.lr: 0.004 (checkpoint) vs 0.001" in err
    assert "checkpointing.resume=false" in err and "Traceback" not in err
    assert len(records(output)) == len(before)  # refused before the run: no record


def test_corrupt_images_are_counted_and_skipped(root, tmp_path):
    damaged = tmp_path / "root"
    shutil.copytree(root, damaged)
    for split in ("train", "val"):
        path = sorted((damaged / split).rglob("*.JPEG"))[0]
        path.write_bytes(path.read_bytes()[:200])  # truncated, as by an interrupted copy
    output = tmp_path / "out"
    # two epochs; a train batch left odd by the corrupt image is evened for mixup
    assert cli_run(damaged, output, "--set", "schedule.epochs=2") == 0
    (record,) = records(output)
    data = record["metrics"]["data"]
    assert data["train_corrupt_images"]["value"] == 1 and data["train_images"]["value"] == 159
    assert data["val_corrupt_images"]["value"] == 1 and data["val_images"]["value"] == 39
    assert Path(record["artifacts"]["corrupt_images"]).read_text().count("\n") == 2
    # a rerun resumes the finished run (nothing trains, nothing is read) and still reports what its epochs saw
    assert cli_run(damaged, output, "--set", "schedule.epochs=2") == 0
    (again,) = [r for r in records(output) if r["record_id"] != record["record_id"]]
    assert again["metrics"]["data"] == data


def test_layer_decay_groups_and_schedule_follow_beit():
    from harmony_bench.models.backbone import load_backbone

    config = get_task(TASK).resolve_config("smoke")
    decay = config["optim"]["layer_decay"]
    model = load_backbone(BACKBONE, drop_path_rate=0.1).model
    depth = len(model.blocks)
    model.reset_classifier(10, global_pool="token")
    optimizer = finetune_recipe.build_optimizer(model, config["optim"])
    scale, wd = {}, {}
    for group in finetune_recipe.param_group_table(model, optimizer):
        for name in group["params"]:
            scale[name], wd[name] = group["lr_scale"], group["weight_decay"]
    assert set(scale) == {name for name, _ in model.named_parameters()}
    # BEiT: stem = layer 0, blocks.i = i + 1, final norm and head = depth + 1; scale decay ** (depth + 1 - id)
    assert scale["patch_embed.proj.weight"] == scale["cls_token"] == pytest.approx(decay ** (depth + 1))
    for i in range(depth):
        assert scale[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(decay ** (depth - i))
    assert (
        scale["blocks.0.mlp.fc1.weight"] < scale[f"blocks.{depth - 1}.mlp.fc1.weight"] < scale["head.weight"]
    )
    assert scale["head.weight"] == scale["norm.weight"] == 1.0
    assert wd["head.weight"] == wd["blocks.0.attn.qkv.weight"] == config["optim"]["weight_decay"]
    assert wd["head.bias"] == wd["pos_embed"] == wd["cls_token"] == wd["norm.weight"] == 0.0

    schedule = {**config["schedule"], "epochs": 10, "warmup_epochs": 2}
    scheduler = finetune_recipe.build_scheduler(optimizer, schedule, updates_per_epoch=5)
    head = next(g for g in optimizer.param_groups if g["lr_scale"] == 1.0)
    scheduler.step_update(0)
    assert head["lr"] == pytest.approx(schedule["warmup_lr"])
    scheduler.step_update(10)  # warmup over: the peak
    assert head["lr"] == pytest.approx(config["optim"]["lr"])
    assert next(g for g in optimizer.param_groups if g["lr_scale"] < 1)["lr"] < head["lr"]
    scheduler.step_update(49)  # the last update ends near min_lr
    assert head["lr"] == pytest.approx(schedule["min_lr"], abs=2e-5)


def test_randaugment_posterize_to_zero_bits_gives_a_black_image():
    from PIL import Image
    from timm.data import auto_augment

    config = get_task(TASK).resolve_config("smoke")
    prep = {"crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    transform = finetune_recipe.train_transform(config["augment"], prep)
    ops = next(t for t in transform.transforms if isinstance(t, auto_augment.RandAugment)).ops
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    posterize.prob, posterize.magnitude_std = 1.0, 0.0
    posterize.magnitude = 10.0  # the cap: keep 0 bits, which Pillow 13 refuses
    image = Image.new("RGB", (8, 8), (200, 120, 40))
    assert posterize(image).getextrema() == ((0, 0),) * 3  # black
    posterize.magnitude = 0.0  # keep 4 bits: timm's own op
    assert posterize(image).getpixel((0, 0)) == (192, 112, 32)


DDP_DRIVER = """
import os, sys
from harmony_bench import events
from harmony_bench.cli import main

def crash(epoch, work_dir):
    if str(epoch) == os.environ.get("CRASH_AT"):
        raise RuntimeError("simulated crash")

events.subscribe("epoch_end", crash)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ddp_on_cpu_agrees_across_ranks_and_resumes_exactly(root, tmp_path):
    """torchrun, 2 gloo processes: one record for the run; a resume after a crash repeats its numbers."""
    import os
    import subprocess
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    driver = tmp_path / "driver.py"
    driver.write_text(DDP_DRIVER)

    def torchrun(output: Path, crash_at: str = "") -> int:
        argv = ["run", "--backbone", BACKBONE, "--task", TASK, "--preset", "smoke", "--data-root", str(root)]
        argv += ["--output", str(output), "--set", "schedule.epochs=3"]
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        env = {**os.environ, "CRASH_AT": crash_at}
        return subprocess.run([*launcher, str(driver), *argv], env=env, capture_output=True).returncode

    assert torchrun(tmp_path / "whole") == 0
    whole = records(tmp_path / "whole")  # rank 0 alone writes the record: one run, one record
    assert len(whole) == 1
    assert whole[0]["metrics"]["data"]["train_images"]["value"] == 160  # the whole split
    assert torchrun(tmp_path / "resumed", crash_at="0") != 0
    assert torchrun(tmp_path / "resumed") == 0
    resumed = [r for r in records(tmp_path / "resumed") if r["status"]["state"] == "completed"]
    assert [r["artifacts"]["resumed_from_epoch"] for r in resumed] == ["1"]
    assert all(r["metrics"] == whole[0]["metrics"] for r in resumed)


def test_mae_recipe_pools_before_a_fresh_fc_norm_and_scales_the_base_lr(tmp_path):
    """MAE models_vit.py:L27-L32,L46-L48 (mean of patch tokens -> fc_norm; the final norm deleted),
    main_finetune.py:L267-L270 (lr = blr * eff_batch / 256), util/lr_decay.py (fc_norm: top layer, no wd),
    util/lr_sched.py:L11-L12 (warm-up from 0)."""
    import torch
    import torch.nn.functional as F

    from harmony_bench.cards import get_card
    from harmony_bench.runner import RunOptions, TaskContext

    spec = get_task(TASK)
    config = spec.resolve_config(
        "mae-vit-b", {"transform": {"resize": None, "crop": None, "interpolation": None}}
    )
    context = TaskContext(get_card(BACKBONE), spec, config, RunOptions(), tmp_path)
    prep = finetune_recipe.preprocessing(context)
    model, _ = finetune_recipe.build_classifier(context, 10, prep)
    model.eval()
    assert isinstance(model.norm, torch.nn.Identity)
    assert torch.equal(model.fc_norm.weight, torch.ones(64)) and torch.equal(
        model.fc_norm.bias, torch.zeros(64)
    )
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = model.forward_features(x)  # blocks' output, no final norm
        pooled = tokens[:, model.num_prefix_tokens :].mean(dim=1)
        expected = model.head(F.layer_norm(pooled, (64,), model.fc_norm.weight, model.fc_norm.bias, 1e-6))
        assert torch.allclose(model(x), expected, atol=1e-5)

    batch = config["train"]["batch_size"]
    assert batch == 1024 and finetune_recipe.peak_lr(config["optim"], batch) == pytest.approx(
        5e-4 * 1024 / 256
    )
    optimizer = finetune_recipe.build_optimizer(model, config["optim"], batch)
    table = finetune_recipe.param_group_table(model, optimizer)
    fc_norm = next(group for group in table if "fc_norm.weight" in group["params"])
    assert fc_norm["lr_scale"] == 1.0 and fc_norm["weight_decay"] == 0.0
    scheduler = finetune_recipe.build_scheduler(optimizer, config["schedule"], updates_per_epoch=4)
    head = next(g for g in optimizer.param_groups if g["lr_scale"] == 1.0)
    for update in (0, 3, 11):  # MAE: lr * (epoch + step / len) / warmup_epochs during the warm-up
        scheduler.step_update(update)
        assert head["lr"] == pytest.approx(2e-3 * (update / 4) / config["schedule"]["warmup_epochs"])
    with pytest.raises(ValueError, match="fc_norm"):
        finetune.check_config({**config, "model": {**config["model"], "global_pool": "token"}})
