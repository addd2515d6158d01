"""Each per-source preset resolves to the values of the upstream lines it names (restated here), every value
of the ImageNet protocols has a citation, and the `released` suite runs each published cell under the
preset of its source.

Upstream commits: MohammedSB/Harmony@848f7ac, facebookresearch/dinov2@b8931f7, facebookresearch/SLIP@c6faf5d,
bytedance/ibot@da316d8, facebookresearch/mae@efb2a80.
"""

import re

import pytest

from harmony_bench.protocols import get_task
from harmony_bench.sources import find_source

# torchvision RandomResizedCrop defaults (scale, ratio), which every linear script uses
RRC = {"scale": [0.08, 1.0], "ratio": [0.75, 4 / 3]}
# DINOv2 dinov2/eval/linear.py:L145 = Harmony eval/eval_linear.py:L403
DINO_LRS = [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1]
# iBOT evaluation/eval_linear_multi.py:L100
IBOT_LRS = [base * n for base in [10**k for k in range(-4, 1)] for n in range(1, 10)]


def linear(preset):
    return get_task("imagenet-linear").resolve_config(preset)


def finetune(preset):
    return get_task("imagenet-finetune").resolve_config(preset)


def check(config, expected):
    """``expected``: dotted path -> value; floats compared approximately."""
    for dotted, want in expected.items():
        node = config
        for part in dotted.split("."):
            node = node[part]
        assert node == pytest.approx(want) if isinstance(want, float | list) else node == want, dotted


# --------------------------------------------------------------------------- imagenet-linear


def test_linear_paper_is_harmony_eval_linear_as_its_readme_runs_it():
    config = linear("paper")
    check(
        config,
        {
            "mode": "augmented",  # eval_linear.py:L180-L201 features of each augmented batch
            "features.variants": [
                "cls+avgpool"
            ],  # README.md:L46 --n_last_blocks 1 --avgpool_patchtokens true
            "features.amp": "none",  # no autocast in eval_linear.py
            "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # L82-L83 interpolation=3
            "train_transform.crop": 224,  # L110 RandomResizedCrop(224)
            "train_transform.interpolation": "bilinear",  # torchvision default
            "train_transform.hflip": 0.5,  # L111 RandomHorizontalFlip()
            "train_transform.sampler": "torchvision",
            "normalize": "imagenet",  # L85, L113
            "head.norm": "none",
            "head.init": "normal",  # L303 normal_(mean=0.0, std=0.01)
            "head.init_std": 0.01,
            "train.epochs": 100,  # README.md:L46 --epochs=100
            "train.batch_size": 8 * 1024,  # README.md:L46 --nproc_per_node=8 --batch_size_per_gpu 1024
            "train.drop_last": False,  # L121-L127 DataLoader default
            "train.steps_per_epoch": None,
            "train.learning_rates": DINO_LRS,  # L403
            "train.lr_scaling": "batch/256",  # L325-L326
            "train.optimizer": "sgd",  # L131
            "train.momentum": 0.9,
            "train.weight_decay": 0.0,
            "train.schedule": {"step": "epoch", "warmup_epochs": 0, "min_lr": 0.0},  # L132, L150
            "eval.every": 1,  # L154, L413 --val_freq 1
            "report": "max",  # L159 best_acc = max(best_acc, best_cur_acc)
        },
    )
    check(config["train_transform"], RRC)


def test_linear_dinov2_is_dinov2_eval_linear():
    check(
        linear("dinov2"),
        {
            "mode": "augmented",
            "features.variants": ["cls", "cls+avgpool", "cls4", "cls4+avgpool"],  # L503, L239
            "features.amp": "fp16",  # setup.py:L52-L58, ssl_default_config.yaml:L9
            "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # transforms.py:L77-L91
            "train_transform.interpolation": "bicubic",  # transforms.py:L55-L63
            "train.epochs": 10,  # L139
            "train.steps_per_epoch": 1250,  # L142
            "train.batch_size": 128 * 8,  # L140, run/submit.py --ngpus 8 --nodes 1
            "train.drop_last": True,  # L530
            "train.learning_rates": DINO_LRS,  # L145
            "train.lr_scaling": "batch/256",  # L231-L232
            "train.optimizer": "sgd",  # L517
            "train.momentum": 0.9,
            "train.weight_decay": 0.0,
            "train.schedule": {"step": "iteration", "warmup_epochs": 0, "min_lr": 0.0},  # L518-L519, L364
            "report": "final",  # L398-L407, L589
        },
    )


def test_linear_slip_is_slip_main_linear():
    from harmony_bench.tasks.imagenet.linear_heads import scaled_lr

    config = linear("slip")
    check(
        config,
        {
            "mode": "augmented",
            "features.variants": ["cls"],  # L120 timm ViT head on the final-normed class token
            "features.amp": "none",
            "transform": {"resize": 256, "crop": 224, "interpolation": "bilinear"},  # L193-L194 Resize(256)
            "train_transform.interpolation": "bilinear",  # L186 RandomResizedCrop(224)
            "train.epochs": 90,  # L37
            "train.batch_size": 128 * 8,  # L41 per GPU, README.md:L398 one node of 8 GPUs
            "train.learning_rates": [0.1],  # L44
            "train.momentum": 0.9,  # L46
            "train.weight_decay": 0.0,  # L48
            "train.optimizer": "sgd",  # L149
            "train.schedule": {"step": "epoch", "warmup_epochs": 0, "min_lr": 0.0},  # L434-L438
            "eval.every": 10,  # L53 --eval-freq 10
            "report": "max",  # L239 best_acc1
            "head.init_std": 0.01,  # L131
        },
    )
    # L134: init_lr = args.lr * int(args.batch_size / utils.get_world_size()) / 256, 128 per GPU, 8 GPUs
    assert scaled_lr(0.1, config["train"]) == pytest.approx(0.1 * int(128 / 8) / 256)


@pytest.mark.parametrize(("preset", "variants"), [("ibot-vit-s", ["cls4"]), ("ibot-vit-b", ["cls+avgpool"])])
def test_linear_ibot_is_eval_linear_multi_as_run_sh_calls_it(preset, variants):
    check(
        linear(preset),
        {
            "mode": "augmented",
            # run.sh:L50-L60: small -> LINEAR_N_LAST_BLOCKS=4, LINEAR_AVGPOOL=0; base -> 1 and 2
            "features.variants": variants,
            "features.amp": "none",
            "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # L56 interpolation=3
            "train_transform.interpolation": "bilinear",  # L50 RandomResizedCrop(224)
            "train.epochs": 100,  # L370
            "train.batch_size": 128 * 8,  # L375, evaluation/README.md:L12 (8 GPUs)
            "train.learning_rates": IBOT_LRS,  # L100
            "train.lr_scaling": "batch/256",  # L132
            "train.optimizer": "sgd",  # L101-L106 sweep_lr_only: sgd, wd 0
            "train.weight_decay": 0.0,
            "train.momentum": 0.9,
            "train.schedule": {"step": "epoch", "warmup_epochs": 0, "min_lr": 0.0},  # L136, L162-L163
            "eval.every": 1,  # L383
            "report": "max",  # L204
        },
    )
    assert len(IBOT_LRS) == 45


@pytest.mark.parametrize(("preset", "epochs"), [("mae-vit-b", 90), ("mae-vit-l", 50), ("mae-vit-h", 50)])
def test_linear_mae_is_main_linprobe(preset, epochs):
    from harmony_bench.tasks.imagenet.linear_heads import scaled_lr

    config = linear(preset)
    check(
        config,
        {
            "mode": "augmented",
            "features.variants": ["cls"],  # FINETUNE.md:L143 --cls_token
            "features.amp": "fp16",  # engine_finetune.py:L55
            "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # main_linprobe.py:L138
            "train_transform.interpolation": "bicubic",  # L133 interpolation=3
            "train_transform.sampler": "mae",  # util/crop.py
            "head.norm": "batchnorm",  # L222 BatchNorm1d(affine=False, eps=1e-6)
            "head.bn_eps": 1e-6,
            "head.bn_momentum": 0.1,
            "head.bn_group": 512,  # FINETUNE.md:L142 --batch_size 512 per GPU
            "head.init": "trunc_normal",  # L218 trunc_normal_(std=0.01)
            "head.init_std": 0.01,
            "train.epochs": epochs,  # FINETUNE.md:L145 (B), L155 (L, H)
            "train.batch_size": 512 * 4 * 8,  # FINETUNE.md:L150 = 16384
            "train.drop_last": True,  # L178
            "train.learning_rates": [0.1],  # FINETUNE.md:L146 --blr 0.1
            "train.optimizer": "lars",  # L252
            "train.momentum": 0.9,  # util/lars.py:L18
            "train.lars_trust": 0.001,
            "train.weight_decay": 0.0,  # FINETUNE.md:L147
            "train.schedule": {"step": "iteration", "warmup_epochs": 10, "min_lr": 0.0},  # L63, L66
            "eval.every": 1,
            "report": "max",  # L287
        },
    )
    assert scaled_lr(0.1, config["train"]) == pytest.approx(0.1 * 16384 / 256)  # L240


def test_linear_fast_is_paper_on_cached_features_and_says_so():
    paper, fast = linear("paper"), linear("fast")
    assert fast["mode"] == "cached" and fast["features"]["storage"] == "fp16"
    assert {**fast, "mode": "augmented", "features": paper["features"]} == paper
    deviations = get_task("imagenet-linear").deviations_for("fast")
    assert any("Features of the eval transform" in d for d in deviations)


# --------------------------------------------------------------------------- imagenet-finetune


BEIT = {
    "model.global_pool": "token",  # --use_cls
    "model.fc_norm": False,
    "model.head_init_scale": 0.001,  # --init_scale 0.001
    "normalize": "imagenet",  # --imagenet_default_mean_and_std
    "augment.auto_augment": "rand-m9-mstd0.5-inc1",  # --aa
    "augment.re_prob": 0.25,  # --reprob
    "mixup.mixup_alpha": 0.8,  # --mixup 0.8
    "mixup.cutmix_alpha": 1.0,  # --cutmix 1.0
    "mixup.label_smoothing": 0.1,  # --smoothing
    "optim.opt": "adamw",
    "optim.lr": 4e-3,  # --lr 4e-3 (absolute)
    "optim.lr_scaling": "none",
    "optim.weight_decay": 0.05,
    "schedule.min_lr": 1e-6,
    "train.batch_size": 128 * 8,  # --batch_size 128, 8 GPUs
}


def test_finetune_paper_is_harmony_readme():
    """Harmony README.md:L60-L78."""
    check(
        finetune("paper-vit-b"),
        {
            **BEIT,
            "schedule.epochs": 100,
            "schedule.warmup_epochs": 20,
            "optim.layer_decay": 0.65,
            "model.drop_path_rate": 0.1,
            "transform.interpolation": "bilinear",  # run_class_finetuning.py:L293 interpolation=2
        },
    )
    assert finetune("paper") == finetune("paper-vit-b")


@pytest.mark.parametrize(
    ("preset", "epochs", "drop_path", "layer_decay"),
    [("ibot-vit-s", 200, 0.1, 0.75), ("ibot-vit-b", 100, 0.2, 0.65)],  # evaluation/README.md:L27-L37
)
def test_finetune_ibot_is_its_readme_command(preset, epochs, drop_path, layer_decay):
    check(
        finetune(preset),
        {
            **BEIT,
            "schedule.epochs": epochs,
            "schedule.warmup_epochs": 20,  # run.sh:L180
            "model.drop_path_rate": drop_path,
            "optim.layer_decay": layer_decay,
            "transform.interpolation": "bilinear",  # run_class_finetuning.py:L288 interpolation=2
        },
    )
    assert finetune("paper-vit-s") == finetune("ibot-vit-s")


@pytest.mark.parametrize(
    ("preset", "epochs", "warmup", "drop_path", "layer_decay"),
    [  # SLIP README.md:L448, L454-L464, L470-L480, L486-L496
        ("slip-vit-s", 100, 20, 0.0, 0.65),
        ("slip-vit-b", 100, 20, 0.1, 0.65),
        ("slip-vit-l", 50, 5, 0.1, 0.75),
    ],
)
def test_finetune_slip_is_its_readme_command(preset, epochs, warmup, drop_path, layer_decay):
    check(
        finetune(preset),
        {
            **BEIT,
            "schedule.epochs": epochs,
            "schedule.warmup_epochs": warmup,
            "model.drop_path_rate": drop_path,
            "optim.layer_decay": layer_decay,
            "transform.interpolation": "bicubic",  # BEiT datasets.py build_transform interpolation=3
        },
    )


@pytest.mark.parametrize(
    ("preset", "blr", "layer_decay", "drop_path", "epochs"),
    [  # FINETUNE.md:L65-L74 (B), L84-L93 (L), L100-L109 (H)
        ("mae-vit-b", 5e-4, 0.65, 0.1, 100),
        ("mae-vit-l", 1e-3, 0.75, 0.2, 50),
        ("mae-vit-h", 1e-3, 0.75, 0.3, 50),
    ],
)
def test_finetune_mae_is_main_finetune(preset, blr, layer_decay, drop_path, epochs):
    from harmony_bench.tasks.imagenet.finetune_recipe import peak_lr

    config = finetune(preset)
    check(
        config,
        {
            "model.global_pool": "avg",  # main_finetune.py:L114-L115 global_pool default True
            "model.fc_norm": True,  # models_vit.py:L27-L32
            "model.drop_path_rate": drop_path,
            "transform": {"resize": 256, "crop": 224, "interpolation": "bicubic"},  # util/datasets.py:L53-L61
            "normalize": "imagenet",
            "augment.color_jitter": None,  # main_finetune.py:L80
            "augment.auto_augment": "rand-m9-mstd0.5-inc1",  # L82
            "augment.interpolation": "bicubic",  # util/datasets.py:L42
            "augment.re_prob": 0.25,
            "mixup.mixup_alpha": 0.8,
            "mixup.cutmix_alpha": 1.0,
            "mixup.label_smoothing": 0.1,  # L84
            "optim.opt": "adamw",  # L287
            "optim.lr": blr,
            "optim.lr_scaling": "batch/256",  # L267-L270
            "optim.weight_decay": 0.05,
            "optim.layer_decay": layer_decay,
            "optim.layer_decay_rule": "beit",  # util/lr_decay.py get_layer_id_for_vit = BEiT's
            "schedule.epochs": epochs,
            "schedule.warmup_epochs": 5,  # L76
            "schedule.warmup_lr": 0.0,  # util/lr_sched.py:L12 lr * epoch / warmup_epochs
            "schedule.min_lr": 1e-6,  # L73
            "schedule.step": "iteration",  # engine_finetune.py:L45-L47
            "train.batch_size": 1024,  # FINETUNE.md:L77 32 x 4 x 8 (B, L); 16 x 8 x 8 (H)
        },
    )
    assert peak_lr(config["optim"], 1024) == pytest.approx(blr * 1024 / 256)


# --------------------------------------------------------------------------- citations

CITATION = re.compile(r"^(?:[\w.-]+/[\w.-]+@[0-9a-f]{7} \S+:L\d+|harmony-bench: \S)")


def leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


@pytest.mark.parametrize("task", ["imagenet-linear", "imagenet-finetune", "imagenet-eval"])
def test_every_resolved_value_of_every_preset_has_a_citation(task):
    spec = get_task(task)
    for preset in spec.presets:
        assert spec.preset_docs.get(preset, {}).get("summary"), f"{task} preset {preset} has no summary"
        for path in leaves(spec.resolve_config(preset)):
            found = find_source(path, spec.sources_for(preset))
            assert found, f"{task} --preset {preset}: {path} has no source"
            source = found[1]
            assert CITATION.match(source), f"{task} {preset} {path}: {source!r} is not a citation"
    assert all(not key[0].isupper() and " " not in key for key in spec.sources), "sources are dotted paths"


# --------------------------------------------------------------------------- the released suite


def test_every_released_cell_names_the_preset_of_its_source():
    from harmony_bench.suites import load_suite

    suite = load_suite("released")
    presets = {(c.backbone.key, c.task.name): c.task.preset for c in suite.cells}
    assert all(preset for preset in presets.values()), "a cell runs the task's default preset"
    assert presets[("slip-vit-s16-yfcc15m-25ep", "imagenet-finetune")] == "slip-vit-s"
    assert presets[("slip-vit-b16-yfcc15m-25ep", "imagenet-finetune")] == "slip-vit-b"
    assert presets[("slip-vit-l16-yfcc15m-25ep", "imagenet-finetune")] == "slip-vit-l"
    assert presets[("slip-vit-b16-cc3m-40ep", "imagenet-linear")] == "slip"
    assert presets[("ibot-vit-s16-in1k", "imagenet-linear")] == "ibot-vit-s"
    assert presets[("ibot-vit-b16-in1k", "imagenet-linear")] == "ibot-vit-b"
    assert presets[("ibot-vit-b16-in1k", "imagenet-finetune")] == "ibot-vit-b"
    assert presets[("mae-vit-b16-in1k", "imagenet-finetune")] == "mae-vit-b"
    assert presets[("mae-vit-h14-in1k", "imagenet-linear")] == "mae-vit-h"
    for size in ("b16", "l16", "h14"):
        assert presets[(f"mae-vit-{size}-in1k-ft", "imagenet-eval")] == "paper"
    calibration = [e for e in suite.expect if e.task == "imagenet-eval"]
    assert sorted(e.value for e in calibration) == [83.664, 85.952, 86.928]  # FINETUNE.md:L26-L28
    assert all(e.tolerance == 0.01 for e in calibration)


@pytest.mark.parametrize("task", ["imagenet-linear", "imagenet-finetune", "imagenet-eval"])
def test_every_key_a_preset_sets_is_a_config_key(task):
    """The protocol file is the schema: a preset can only change values `config` declares."""
    spec = get_task(task)
    declared = set(leaves(spec.config))
    for preset, overrides in spec.presets.items():
        for path in filter(None, leaves(overrides)):
            assert path in declared or any(path.startswith(f"{key}.") for key in declared), (
                f"{preset}: {path}"
            )
