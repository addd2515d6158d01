"""ADE20K frozen-backbone linear segmentation: the upstream configs' numbers, frozen weights, a smoke record.

The upstream values are restated here with their file and line (bytedance/ibot@da316d8
evaluation/semantic_segmentation/configs/linear/vit_{small,base,large}_512_ade20k_160k.py, byte-identical
to MohammedSB/Harmony@848f7ac Harmony/eval/semantic_segmentation/configs/linear/; iBOT evaluation/README.md)
so that the tests need no upstream checkout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harmony_bench.cards import get_card
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.results import load_record, validate_record
from harmony_bench.runner import RunOptions, TaskContext

pytestmark = pytest.mark.mm
BACKBONE = "vit-tiny-random"
SIZE_CARDS = {"s": "ibot-vit-s16-in1k", "b": "ibot-vit-b16-in1k", "l": "ibot-vit-l16-in1k"}

# What each upstream file says (same line in the three files): L29 img_size, L31 embed_dim, L39 out_indices,
# L43 in_channels, L46 channels, L64 lr; L72-L73 samples_per_gpu=2 on 8 GPUs.
UPSTREAM = {
    "s": {"embed": 384, "out_indices": [3, 5, 7, 11], "in_channels": [384] * 4, "channels": 1536, "lr": 3e-5},
    "b": {"embed": 768, "out_indices": [3, 5, 7, 11], "in_channels": [768] * 4, "channels": 3072, "lr": 7e-4},
    # L43/L46: [512] * 4 and 2048 for 1024-wide maps, the upstream bug (fixed here: 4 x 1024 -> 4096)
    "l": {
        "embed": 1024,
        "out_indices": [7, 11, 15, 23],
        "in_channels": [512] * 4,
        "channels": 2048,
        "lr": 2e-5,
    },
}
# iBOT evaluation/README.md:L99-L105: ade20k_dense_linear vit_base, 4 GPUs, samples_per_gpu=4,
# model.backbone.out_with_norm=true, optimizer.lr=8e-4
README_B = {"batch": 4 * 4, "out_with_norm": True, "lr": 8e-4}


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ade")
    synthesize("ade20k", out, seed=0)
    return out / "ADEChallengeData2016"


def linear_config(size: str, preset: str = "paper", card: str | None = None, **overrides):
    from harmony_bench.tasks.ade20k.linear import build_config

    spec = get_task("ade20k-linear")
    context = TaskContext(
        card=get_card(card or SIZE_CARDS[size]),
        task=spec,
        config=spec.resolve_config(preset, {"size": size} if card is None else overrides),
        options=RunOptions(preset=preset),
        work_dir=Path("work"),
    )
    return build_config(context)


def test_linear_protocol_restates_the_upstream_files_per_size():
    for size, want in UPSTREAM.items():
        cfg = linear_config(size, "harmony-config")
        assert cfg.crop_size == (512, 512)  # L20
        assert cfg.total_batch_size == 16 and cfg.train_dataloader.batch_size == 16  # L72-L73: 8 x 2
        backbone, head = cfg.model.backbone, cfg.model.decode_head
        assert backbone.type == "FrozenRegistryBackbone"  # L38 frozen_stages = depth
        assert backbone.out_indices == want["out_indices"] and backbone.img_size == 512  # L39, L29
        assert backbone.out_with_norm is False  # register_backbone.py:L24 default; the files set none
        assert cfg.model.neck is None and cfg.model.auxiliary_head is None  # L37 with_fpn=False, no aux
        assert (head.type, head.input_transform, head.in_index) == ("FCNHead", "resize_concat", [0, 1, 2, 3])
        assert (head.num_convs, head.concat_input, head.dropout_ratio) == (0, False, 0.0)  # L47-L49
        assert (head.num_classes, head.align_corners, head.loss_decode.loss_weight) == (150, False, 1.0)
        # L43/L46, except ViT-L's bug: the head takes the maps it is given (4 x the width)
        assert head.in_channels == [want["embed"]] * 4 and head.channels == 4 * want["embed"]
        if size != "l":
            assert head.in_channels == want["in_channels"] and head.channels == want["channels"]
        assert cfg.model.test_cfg.mode == "slide" and cfg.model.test_cfg.stride == (341, 341)  # L55
        optimizer = cfg.optim_wrapper.optimizer
        assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("AdamW", want["lr"], 0.05)  # L64
        assert optimizer.betas == (0.9, 0.999) and "paramwise_cfg" not in cfg.optim_wrapper
        assert cfg.optim_wrapper.constructor == "TrainableOnlyOptimWrapperConstructor"
        (schedule,) = cfg.param_scheduler  # L66-L70
        assert (schedule.type, schedule.warmup_iters, schedule.warmup_ratio) == ("MMCV1PolyLR", 1500, 1e-6)
        assert (schedule.power, schedule.min_lr, schedule.end) == (1.0, 0.0, 160000)
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_cfg.val_interval == 64000  # schedule_160k.py
        resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]  # the same dataset file as UperNet
        assert resize.scale == (2048, 512) and crop.cat_max_ratio == 0.75
        assert "sources" not in cfg


def test_paper_preset_is_the_ibot_readme_command_for_vit_b_and_the_files_otherwise():
    b = linear_config("b")
    assert b.total_batch_size == README_B["batch"]
    assert b.model.backbone.out_with_norm is README_B["out_with_norm"]
    assert b.optim_wrapper.optimizer.lr == README_B["lr"]
    for size in ("s", "l"):  # no README command: paper = the file as it stands (= harmony-config)
        assert linear_config(size).to_dict() == linear_config(size, "harmony-config").to_dict()


def test_the_vit_l_file_widths_fail_and_the_fixed_ones_run():
    """configs/linear/vit_large_512...py:L43-L46 as written: the head builds, then fails on ViT-L's maps."""
    from mmseg.models.decode_heads import FCNHead

    def head(in_channels, channels):
        return FCNHead(
            in_channels=in_channels,
            in_index=[0, 1, 2, 3],
            input_transform="resize_concat",
            channels=channels,
            num_convs=0,
            concat_input=False,
            dropout_ratio=0,
            num_classes=150,
        )

    maps = [torch.randn(1, 1024, 2, 2) for _ in range(4)]  # ViT-L block outputs
    broken = head(UPSTREAM["l"]["in_channels"], UPSTREAM["l"]["channels"])  # accepted: 4 x 512 == 2048
    with pytest.raises(RuntimeError):
        broken(maps)
    cfg = linear_config("l")
    fixed = head(cfg.model.decode_head.in_channels, cfg.model.decode_head.channels)
    assert fixed(maps).shape == (1, 150, 2, 2)


def test_backbone_is_frozen_bit_identical_and_outside_the_optimizer():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    from harmony_bench.dense import register_into

    register_into("mmseg")
    init_default_scope("mmseg")
    cfg = linear_config("b", "smoke", card=BACKBONE)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    backbone = model.backbone
    before = {name: p.detach().clone() for name, p in backbone.state_dict().items()}
    head_before = model.decode_head.conv_seg.weight.detach().clone()
    in_optimizer = {id(p) for group in optim_wrapper.optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in backbone.parameters()}
    assert in_optimizer == {id(p) for p in model.decode_head.parameters()}

    images = torch.randn(2, 3, 64, 64)
    samples = []
    for _ in range(2):
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, 64, 64))))
        sample.set_metainfo({"img_shape": (64, 64), "pad_shape": (64, 64)})
        samples.append(sample)
    for _ in range(3):
        model.train()  # what the Runner does: the backbone must stay in eval mode
        assert not any(m.training for m in backbone.modules())
        assert not any(t.requires_grad for t in backbone(images))  # no graph through the backbone
        losses = model(images, samples, mode="loss")
        optim_wrapper.update_params(sum(v for k, v in losses.items() if "loss" in k))
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    after = backbone.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # bit-identical
    assert not torch.equal(head_before, model.decode_head.conv_seg.weight)  # the head did train


def test_smoke_run_writes_a_valid_record_that_beats_the_constant_baseline(ade_root, tmp_path):
    argv = ["run", "--backbone", BACKBONE, "--task", "ade20k-linear", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(ade_root), "--output", str(tmp_path)]) == 0
    (path,) = sorted(tmp_path.glob("*.json"))
    record = load_record(path)
    assert validate_record(record) == []
    assert record["task"]["name"] == "ade20k-linear" and record["dataset"]["synthetic"] is True
    assert any("torch.no_grad" in d for d in record["task"]["deviations"])
    metrics = record["metrics"]
    assert metrics["mIoU"]["value"] > 1.5 * metrics["constant_baseline_mIoU"]["value"]
    assert set(metrics["per_class"]) >= {"sky", "floor"}


def test_bad_inputs_stop_before_anything_runs(ade_root, tmp_path, capsys):
    argv = ["run", "--backbone", BACKBONE, "--task", "ade20k-linear", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    assert "not an ADE20K root" in capsys.readouterr().err
    bad_key = ["--cfg-options", "model.decode_head.num_conv=1"]
    assert main([*argv, "--data-root", str(ade_root), "--output", str(tmp_path / "out"), *bad_key]) == 2
    assert "did you mean model.decode_head.num_convs" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.json"))


def test_protocol_show_cites_the_readme_command(capsys):
    assert main(["protocol", "show", "ade20k-linear", "--size", "b"]) == 0
    text = capsys.readouterr().out
    assert "evaluation/README.md:L99-L105" in text and "optim_wrapper.optimizer.lr = 0.0008" in text
    assert main(["protocol", "show", "ade20k-linear", "--size", "l"]) == 0
    assert "harmony-bench fix of" in capsys.readouterr().out
