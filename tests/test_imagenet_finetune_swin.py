"""imagenet-finetune for Swin: SimMIM's fine-tuning recipe (preset simmim-swin-b) restated over timm's Swin.

Upstream: microsoft/SimMIM@d3e29bc.  The rule restated here, on SimMIM's own parameter names, is
optimizer.py:L123-L136 (get_swin_layer), L71-L74 and L81 (sum(depths) + 2 layers, scale
LAYER_DECAY ** (num_layers + 1 - id)) and L146-L147 (no weight decay: 1-D, ``.bias``, ``no_weight_decay()``
= {absolute_pos_embed}, keywords {relative_position_bias_table}: models/swin_transformer.py:L557-L562).
The schedule is lr_scheduler.py:L19-L35 (timm CosineLRScheduler over all iterations, warm-up inside it) with
main_finetune.py:L322-L324 (lr, warm-up lr and minimum lr x batch / 512) and L207-L208 (stepped after each
update).
"""

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from harmony_bench.cards import backbone_registry, get_card
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.results import load_record, validate_record
from harmony_bench.tasks.imagenet import finetune_recipe

TASK = "imagenet-finetune"
SWIN_B_DEPTHS = [
    2,
    2,
    18,
    2,
]  # configs/swin_base__100ep/simmim_finetune__swin_base__img224_window7__100ep.yaml:L7
TINY_SWIN = {
    "embed_dim": 16,
    "depths": [1, 2, 1, 1],
    "num_heads": [1, 1, 2, 2],
    "window_size": 4,
    "img_size": 64,
}


def simmim_name(timm_name: str) -> str:
    """timm's Swin parameter name as SimMIM's Swin calls it: patch merging closes the previous stage."""
    name = re.sub(
        r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", timm_name
    )
    return re.sub(r"^head\.fc\.", "head.", name)


def simmim_layer(name: str, depths: list[int]) -> int:
    """optimizer.py:L123-L136 on SimMIM's names (num_layers = sum(depths) + 2, L74)."""
    parts = name.split(".")
    if name == "mask_token" or name.startswith("patch_embed"):
        return 0
    if name.startswith("layers"):
        stage, block = int(parts[1]), parts[3]
        if block in ("reduction", "norm"):
            return sum(depths[: stage + 1])
        return sum(depths[:stage]) + int(block) + 1
    return sum(depths) + 1


def simmim_no_decay(name: str, param: torch.Tensor) -> bool:
    """optimizer.py:L146-L147 with the Swin skip lists of models/swin_transformer.py:L557-L562."""
    return (
        len(param.shape) == 1
        or name.endswith(".bias")
        or name == "absolute_pos_embed"
        or "relative_position_bias_table" in name
    )


def groups_by_name(model: torch.nn.Module, optimizer) -> dict[str, tuple[float, float]]:
    table = finetune_recipe.param_group_table(model, optimizer)
    return {name: (group["lr_scale"], group["weight_decay"]) for group in table for name in group["params"]}


def test_swin_b_layer_ids_and_weight_decay_follow_simmim():
    """The real timm swin_base_patch4_window7_224 (random init): each parameter's lr scale and decay."""
    import timm

    config = get_task(TASK).resolve_config("simmim-swin-b")["optim"]
    model = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=10)
    optimizer = finetune_recipe.build_optimizer(model, config, batch_size=2048)
    ours = groups_by_name(model, optimizer)
    decay, top = config["layer_decay"], sum(SWIN_B_DEPTHS) + 1
    names = dict(model.named_parameters())
    assert set(ours) == set(names)
    for name, param in names.items():
        layer = simmim_layer(simmim_name(name), SWIN_B_DEPTHS)
        assert finetune_recipe.simmim_swin_layer(name, SWIN_B_DEPTHS) == layer, name
        want_wd = 0.0 if simmim_no_decay(simmim_name(name), param) else config["weight_decay"]
        assert ours[name] == (pytest.approx(decay ** (top - layer)), want_wd), name
    # the timm/SimMIM placement of patch merging, spelled out: timm's layers.1.downsample is SimMIM's
    # layers.0.downsample and shares the lr of stage 0's last block (layer 2); timm's layers.3.downsample
    # closes stage 2 (18 blocks): layer 2 + 2 + 18 = 22, the id of layers.2.blocks.17
    assert ours["layers.1.downsample.reduction.weight"][0] == ours["layers.0.blocks.1.attn.qkv.weight"][0]
    assert ours["layers.3.downsample.norm.weight"][0] == ours["layers.2.blocks.17.mlp.fc1.weight"][0]
    assert ours["layers.3.downsample.norm.weight"][0] == pytest.approx(decay ** (top - 22))
    assert ours["patch_embed.proj.weight"][0] == pytest.approx(decay**25)
    assert ours["head.fc.weight"] == (1.0, config["weight_decay"]) and ours["norm.weight"] == (1.0, 0.0)
    assert ours["layers.2.blocks.5.attn.relative_position_bias_table"][1] == 0.0  # 2-D, excluded by name
    assert len({g["lr_scale"] for g in optimizer.param_groups}) == top + 1  # 26 layers: sum(depths) + 2


def test_swin_layer_ids_cover_every_layer_for_other_depths():
    """A Swin whose stages have other depths: ids still run 0 .. sum(depths) + 1 without gaps."""
    import timm

    depths = TINY_SWIN["depths"]
    model = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=4, **TINY_SWIN)
    ids = {finetune_recipe.simmim_swin_layer(name, depths) for name, _ in model.named_parameters()}
    assert ids == set(range(sum(depths) + 2))
    for name, _ in model.named_parameters():
        assert finetune_recipe.simmim_swin_layer(name, depths) == simmim_layer(simmim_name(name), depths)


def simmim_lr(t: int, peak: float, warmup_lr: float, min_lr: float, warmup_t: int, total: int) -> float:
    """timm CosineLRScheduler as lr_scheduler.py:L26-L35 builds it: the cosine over all ``total`` steps."""
    if t < warmup_t:
        return warmup_lr + t * (peak - warmup_lr) / warmup_t
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * t / total))


def test_simmim_schedule_scales_every_lr_and_steps_after_each_update():
    from harmony_bench.runtime import ProcessGroup
    from harmony_bench.tasks.imagenet.finetune import Trainer

    config = get_task(TASK).resolve_config("simmim-swin-b")
    optim, batch = config["optim"], config["train"]["batch_size"]
    factor = batch / 512  # main_finetune.py:L322-L324
    assert finetune_recipe.peak_lr(optim, batch) == pytest.approx(1.25e-3 * factor)
    assert finetune_recipe.schedule_lr_factor(optim, batch) == pytest.approx(factor)
    mae = get_task(TASK).resolve_config("mae-vit-b")["optim"]
    assert finetune_recipe.schedule_lr_factor(mae, 1024) == 1.0  # MAE scales only the peak

    schedule = {**config["schedule"], "epochs": 6, "warmup_epochs": 2}
    per_epoch, total = 5, 30
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW(
        [{"params": [weight], "lr_scale": 1.0}], lr=finetune_recipe.peak_lr(optim, batch)
    )
    scheduler = finetune_recipe.build_scheduler(optimizer, schedule, per_epoch, factor)
    expected = [
        simmim_lr(t, 1.25e-3 * factor, 2.5e-7 * factor, 2.5e-7 * factor, 2 * per_epoch, total)
        for t in range(total)
    ]
    trainer = Trainer(
        model=None, module=torch.nn.Linear(1, 1), optimizer=optimizer, scheduler=scheduler,
        scaler=torch.amp.GradScaler("cpu", enabled=False), mixup=None, criterion=None,
        device=torch.device("cpu"), amp="none", accum=1, clip_grad=None, per_iteration=True,
        proc=ProcessGroup(), step_after=True,
    )  # fmt: skip
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])  # the lr this update runs at
        weight.grad = torch.ones(1)
        trainer._step()
    # update 0 runs at the warm-up lr the scheduler starts with, update k at the schedule's k - 1
    assert used[0] == pytest.approx(expected[0])
    assert used[1:] == pytest.approx(expected[:-1], rel=1e-9)
    assert expected[2 * per_epoch] < 1.25e-3 * factor  # no warm-up prefix: the cosine already began


@pytest.fixture
def tiny_swin(tmp_path, monkeypatch) -> str:
    """A card like swin-b-p4w7-in1k (family swin, Microsoft's layout, converter swin), tiny and random."""
    import timm

    data = yaml.safe_load(Path(get_card("swin-b-p4w7-in1k").path).read_text(encoding="utf-8"))
    data["name"] = "tiny-swin"
    data["architecture"]["overrides"] = {**data["architecture"]["overrides"], **TINY_SWIN}
    data["preprocessing"].update(input_size=64, resize=72, crop=64)
    torch.manual_seed(0)
    model = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=0, **TINY_SWIN)
    state = {simmim_name(k): v for k, v in model.state_dict().items()}  # Microsoft's layout
    weights = tmp_path / "cards" / "tiny-swin.pth"
    weights.parent.mkdir()
    torch.save({"model": state}, weights)
    data["checkpoint"].update(source=str(weights), sha256=None)
    (tmp_path / "cards" / "tiny-swin.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(tmp_path / "cards"))
    backbone_registry.cache_clear()
    return "tiny-swin"


def test_smoke_on_a_swin_backbone_runs_the_swin_recipe(tiny_swin, tmp_path, capsys):
    """`run --backbone <swin> --task imagenet-finetune --preset smoke` runs smoke-swin (family_presets)."""
    assert get_task(TASK).preset_for("smoke", get_card("swin-b-p4w7-in1k").family) == "smoke-swin"
    assert get_task(TASK).preset_for("smoke", get_card("vit-tiny-random").family) == "smoke"
    root = synthesize("imagenet", tmp_path / "imagenet", n=64).root
    output = tmp_path / "out"
    argv = ["run", "--backbone", tiny_swin, "--task", TASK, "--preset", "smoke", "--data-root", str(root)]
    assert main([*argv, "--output", str(output)]) == 0
    (path,) = output.glob("*.json")
    record = load_record(path)
    assert validate_record(record) == [] and record["status"]["state"] == "completed"
    assert record["task"]["preset"] == "smoke-swin"
    assert record["task"]["config"]["optim"]["layer_decay_rule"] == "simmim-swin"
    assert record["artifacts"]["schedule_step"] == "iteration-after"
    history = record["metrics"]["history"]
    assert list(history) == ["epoch_001", "epoch_002"]
    assert all(math.isfinite(row["train_loss"]["value"]) for row in history.values())
    groups = yaml.safe_load(Path(record["artifacts"]["param_groups"]).read_text())
    scales = {name: g["lr_scale"] for g in groups for name in g["params"]}
    top = sum(TINY_SWIN["depths"]) + 1
    assert scales["head.fc.weight"] == 1.0 and scales["patch_embed.proj.weight"] == pytest.approx(0.9**top)


def test_a_vit_preset_on_a_swin_backbone_is_refused_before_work(tiny_swin, tmp_path, capsys):
    root = synthesize("imagenet", tmp_path / "imagenet", n=16).root
    output = tmp_path / "out"
    argv = [
        "run",
        "--backbone",
        tiny_swin,
        "--task",
        TASK,
        "--preset",
        "paper-vit-b",
        "--data-root",
        str(root),
    ]
    assert main([*argv, "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert "layer_decay_rule 'beit'" in err and "simmim-swin-b" in err and "Traceback" not in err
    assert not list(output.glob("*.json"))  # refused before the run: no record


def test_simmim_swin_b_is_its_finetune_config():
    """simmim_finetune__swin_base__img224_window7__100ep.yaml over config.py's defaults (lines inline)."""
    config = get_task(TASK).resolve_config("simmim-swin-b")
    expected = {
        "model.drop_path_rate": 0.1,  # yaml L4
        "model.global_pool": "avg",  # models/swin_transformer.py:L573-L576 (norm, avgpool, head)
        "model.head_init_scale": 1.0,  # models/swin_transformer.py:L547-L551 (trunc_normal 0.02, unscaled)
        "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # data_finetune.py:L97-L105
        "augment.color_jitter": 0.4,  # config.py:L141
        "augment.auto_augment": "rand-m9-mstd0.5-inc1",  # config.py:L143
        "augment.re_prob": 0.25,  # config.py:L145
        "augment.interpolation": "bicubic",  # config.py:L31
        "mixup.mixup_alpha": 0.8,  # config.py:L151
        "mixup.cutmix_alpha": 1.0,  # config.py:L153
        "mixup.label_smoothing": 0.1,  # config.py:L59
        "optim.lr": 1.25e-3,  # yaml L15
        "optim.lr_scaling": "batch/512",  # main_finetune.py:L322
        "optim.lr_scaling_scope": "all",  # main_finetune.py:L322-L324
        "optim.weight_decay": 0.05,  # yaml L18
        "optim.layer_decay": 0.9,  # yaml L19
        "optim.clip_grad": 5.0,  # config.py:L102
        "optim.eps": 1e-8,  # config.py:L127
        "schedule.epochs": 100,  # yaml L13
        "schedule.warmup_epochs": 20,  # yaml L14
        "schedule.warmup_lr": 2.5e-7,  # yaml L16
        "schedule.min_lr": 2.5e-7,  # yaml L17
        "schedule.warmup_prefix": False,  # lr_scheduler.py:L26-L35
        "schedule.step": "iteration-after",  # main_finetune.py:L207-L208
        "train.batch_size": 16 * 128,  # README.md:L132-L133
    }
    for dotted, want in expected.items():
        node = config
        for part in dotted.split("."):
            node = node[part]
        assert node == (pytest.approx(want) if isinstance(want, float) else want), dotted
    assert finetune_recipe.peak_lr(config["optim"], config["train"]["batch_size"]) == pytest.approx(5e-3)


def test_family_presets_must_name_presets(tmp_path):
    from harmony_bench.protocols import task_from_file
    from harmony_bench.yaml_io import DataFileError

    data = yaml.safe_load(Path(get_task(TASK).path).read_text(encoding="utf-8"))
    data["family_presets"] = {"swin": {"smoke": "smoke-swim"}}
    path = tmp_path / f"{TASK}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(DataFileError, match="family_presets.swin maps 'smoke' to 'smoke-swim'"):
        task_from_file(path)
