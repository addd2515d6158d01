"""ADE20K with UperNet through mmseg: the paper protocol's numbers, a smoke run, resume, the metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harmony_bench import events
from harmony_bench.cards import get_card
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.results import load_record, validate_record
from harmony_bench.runner import RunOptions, TaskContext

pytestmark = pytest.mark.mm
BACKBONE = "vit-tiny-random"


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ade")
    synthesize("ade20k", out, seed=0)
    return out / "ADEChallengeData2016"


def records(output: Path) -> list[dict]:
    return [load_record(p) for p in sorted(output.glob("*.json"))]


def smoke(root: Path, output: Path, *extra: str) -> int:
    argv = ["run", "--backbone", BACKBONE, "--task", "ade20k", "--preset", "smoke", "--data-root", str(root)]
    return main([*argv, "--output", str(output), *extra])


def paper_config(size: str, card: str, preset: str = "paper"):
    from harmony_bench.tasks.ade20k.upernet import build_config

    spec = get_task("ade20k")
    context = TaskContext(
        card=get_card(card),
        task=spec,
        config=spec.resolve_config(preset, {"size": size}),
        options=RunOptions(preset=preset),
        work_dir=Path("work"),
    )
    return build_config(context)


@pytest.mark.parametrize(
    "cfg_options",
    [{"train_dataloader.batch_size": 8}, {"train_dataloader": {"batch_size": 8}}],
    ids=["dotted", "nested"],
)
def test_a_batch_size_the_user_sets_is_the_batch_that_trains(cfg_options):
    """total_batch_size fills the per-process batch only when the user set none (in either spelling)."""
    from harmony_bench.tasks.ade20k.upernet import build_config

    spec = get_task("ade20k")
    context = TaskContext(
        card=get_card("ibot-vit-s16-in1k"),
        task=spec,
        config=spec.resolve_config("paper", {"size": "s", "cfg_options": cfg_options}),
        options=RunOptions(preset="paper"),
        work_dir=Path("work"),
    )
    assert build_config(context).train_dataloader.batch_size == 8


def test_the_poly_schedule_spans_the_run_the_user_asks_for():
    """mmcv 1.x's poly runs over runner.max_iters: a shorter run decays to min_lr over its own length."""
    from harmony_bench.tasks.ade20k.upernet import build_config

    spec = get_task("ade20k")

    def config(cfg_options):
        context = TaskContext(
            card=get_card("ibot-vit-s16-in1k"),
            task=spec,
            config=spec.resolve_config("paper", {"size": "s", "cfg_options": cfg_options}),
            options=RunOptions(preset="paper"),
            work_dir=Path("work"),
        )
        return build_config(context)

    (schedule,) = config({"train_cfg.max_iters": 80000}).param_scheduler
    assert schedule.end == 80000
    with pytest.raises(
        ValueError, match=r"param_scheduler\.0\.end=100000 differs from train_cfg\.max_iters=80000"
    ):
        config({"train_cfg.max_iters": 80000, "param_scheduler.0.end": 100000})


def test_paper_protocol_numbers_vit_s_b_and_l(monkeypatch):
    s, b = paper_config("s", "ibot-vit-s16-in1k"), paper_config("b", "ibot-vit-b16-in1k")
    for cfg, width in ((s, 384), (b, 768)):
        assert cfg.crop_size == (512, 512) and cfg.train_cfg.max_iters == 160000
        assert cfg.total_batch_size == 16 and cfg.train_dataloader.batch_size == 16  # one process
        assert cfg.optim_wrapper.paramwise_cfg.num_layers == 12
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
        (schedule,) = cfg.param_scheduler
        assert (schedule.type, schedule.warmup_iters, schedule.warmup_ratio) == ("MMCV1PolyLR", 1500, 1e-6)
        assert (schedule.power, schedule.min_lr, schedule.begin, schedule.end) == (1.0, 0.0, 0, 160000)
        assert cfg.train_cfg.val_interval == 64000  # schedule_160k.py: evaluation every 64000 iterations
        assert "sources" not in cfg  # popped before the Runner sees the config
        backbone = cfg.model.backbone
        assert backbone.out_indices == [3, 5, 7, 11] and backbone.drop_path_rate == 0.1
        assert backbone.img_size == 512 and backbone.out_with_norm is True  # iBOT README: S and B commands
        head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
        assert head.type == "UPerHead" and head.channels == width and head.pool_scales == (1, 2, 3, 6)
        assert head.in_channels == [width] * 4 and head.num_classes == 150
        assert (aux.type, aux.in_index, aux.channels, aux.loss_decode.loss_weight) == ("FCNHead", 2, 256, 0.4)
        assert cfg.model.neck.type == "Feature2Pyramid" and cfg.model.neck.rescales == [4, 2, 1, 0.5]
        assert cfg.model.test_cfg.mode == "slide" and cfg.model.test_cfg.stride == (341, 341)
        resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]
        assert resize.scale == (2048, 512) and resize.ratio_range == (0.5, 2.0) and crop.cat_max_ratio == 0.75
        assert head.norm_cfg.type == "SyncBN"
    assert (s.optim_wrapper.optimizer.lr, s.optim_wrapper.paramwise_cfg.layer_decay_rate) == (3e-5, 0.9)
    # iBOT README "ViT-B/16 with UperNet": optimizer.lr=8e-5 (the run behind its published 50.0 mIoU)
    assert (b.optim_wrapper.optimizer.lr, b.optim_wrapper.paramwise_cfg.layer_decay_rate) == (8e-5, 0.65)
    large = paper_config("l", "ibot-vit-l16-in1k")  # Harmony's vit_large_512_ade20k_160k.py
    assert large.model.backbone.out_with_norm is False  # no README command: the backbone's default
    assert large.model.backbone.out_indices == [7, 11, 15, 23] and large.model.backbone.drop_path_rate == 0.2
    assert large.optim_wrapper.optimizer.lr == 2e-5 and large.model.decode_head.channels == 1024
    assert dict(large.optim_wrapper.paramwise_cfg) == {"num_layers": 24, "layer_decay_rate": 0.65}
    monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun on 4 GPUs: 4 images each, still 16 per iteration
    assert paper_config("b", "ibot-vit-b16-in1k").train_dataloader.batch_size == 4
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        paper_config("b", "ibot-vit-b16-in1k")


def test_vit_b_sources_are_presets_named_after_them(capsys):
    readme = paper_config("b", "ibot-vit-b16-in1k", "harmony-readme")  # Harmony README: 4 x 4, lr 8e-4
    assert (readme.optim_wrapper.optimizer.lr, readme.model.backbone.out_with_norm) == (8e-4, True)
    config = paper_config("b", "ibot-vit-b16-in1k", "harmony-config")  # Harmony's config file as it stands
    assert (config.optim_wrapper.optimizer.lr, config.model.backbone.out_with_norm) == (7e-4, False)
    for cfg in (readme, config):
        assert cfg.total_batch_size == 16 and cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    with pytest.raises(ValueError, match="no ViT-S protocol"):
        paper_config("s", "ibot-vit-s16-in1k", "harmony-readme")
    assert main(["protocol", "show", "ade20k", "--size", "b", "--preset", "harmony-readme"]) == 0
    text = capsys.readouterr().out
    assert (
        "MohammedSB/Harmony@848f7ac README.md:L85-L94" in text
        and "optim_wrapper.optimizer.lr = 0.0008" in text
    )
    assert "copy slip" in text  # the preset's summary


@pytest.mark.filterwarnings("ignore:Detected call of `scheduler.step\\(\\)` before")
def test_lr_curve_is_mmcv1_poly_with_linear_warmup_at_every_iteration():
    """The scheduler of the resolved config against mmcv 1.x's formula, written out (lr_updater.py)."""
    from mmengine.registry import PARAM_SCHEDULERS

    from harmony_bench.dense import register_into

    register_into("mmseg")
    cfg = paper_config("s", "ibot-vit-s16-in1k")
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    base = [3e-5, 3e-5 * 0.9**5]  # two layer-decayed param groups
    optimizer = torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, base, strict=True)])
    (spec,) = cfg.param_scheduler
    scheduler = PARAM_SCHEDULERS.build(dict(spec, optimizer=optimizer))
    max_iters, warmup_iters, ratio = 160000, 1500, 1e-6

    def mmcv(base_lr: float, i: int) -> float:  # PolyLrUpdaterHook.get_lr + get_warmup_lr('linear')
        regular = (base_lr - 0.0) * (1 - i / max_iters) ** 1.0 + 0.0
        if i < warmup_iters:
            k = (1 - i / warmup_iters) * (1 - ratio)
            return regular * (1 - k)
        return regular

    samples = {0, 1, 2, 749, 1499, 1500, 1501, 16000, 64000, 80000, 159998, 159999}
    seen = 0
    for i in range(max_iters):
        if i in samples:
            for group, base_lr in zip(optimizer.param_groups, base, strict=True):
                assert group["lr"] == pytest.approx(mmcv(base_lr, i), rel=1e-12, abs=0), i
            seen += 1
        scheduler.step()  # what ParamSchedulerHook does after every iteration (no optimizer step needed)
    assert seen == len(samples)


def test_protocol_show_prints_the_resolved_config(capsys):
    assert main(["protocol", "show", "ade20k", "--size", "s"]) == 0
    text = capsys.readouterr().out
    assert "size s" in text and "lr=3e-05" in text and "layer_decay_rate=0.9" in text
    assert "model.backbone.out_with_norm = true" in text and "evaluation/README.md:L91-L97" in text
    assert main(["protocol", "show", "ade20k", "--size", "l"]) == 0
    assert "".join(capsys.readouterr().out.split()).count("out_indices=[7,11,15,23,]") == 1
    assert main(["protocol", "show", "ade20k", "--backbone", BACKBONE, "--preset", "smoke"]) == 0
    text = "".join(capsys.readouterr().out.split())  # layer decay over the tiny ViT's own 2 blocks
    assert "num_layers=2" in text and "total_batch_size=4" in text


def test_smoke_run_learns_and_resumes_without_redoing_iterations(ade_root, tmp_path):
    assert smoke(ade_root, tmp_path / "whole") == 0
    (record,) = records(tmp_path / "whole")
    assert validate_record(record) == []
    metrics = record["metrics"]
    assert record["dataset"]["synthetic"] is True and record["task"]["name"] == "ade20k"
    assert metrics["mIoU"]["value"] > 2 * metrics["constant_baseline_mIoU"]["value"]
    assert set(metrics["per_class"]) >= {"sky", "floor"}
    assert Path(record["artifacts"]["mm_config"]).is_file()

    def crash(iteration: int, work_dir: str) -> None:
        if iteration == 40:
            raise RuntimeError("simulated interruption")

    with events.subscribed("train_iter", crash):
        assert smoke(ade_root, tmp_path / "resumed") == 1  # failed record, checkpoint of iter 40 kept
    assert smoke(ade_root, tmp_path / "resumed") == 0
    done = [r for r in records(tmp_path / "resumed") if r["status"]["state"] == "completed"]
    assert [r["artifacts"]["resumed_from_iter"] for r in done] == ["40"]
    for name in ("mIoU", "mAcc", "aAcc"):  # the resumed run repeats the uninterrupted one
        assert done[0]["metrics"][name]["value"] == metrics[name]["value"]


def test_resume_refuses_a_work_dir_of_another_configuration(ade_root, tmp_path):
    work = tmp_path / "work"
    assert (
        smoke(ade_root, tmp_path / "a", "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=20")
        == 0
    )
    rc = smoke(ade_root, tmp_path / "b", "--work-dir", str(work), "--cfg-options", "train_cfg.max_iters=30")
    assert rc == 1
    (failed,) = records(tmp_path / "b")
    assert "another configuration" in failed["status"]["error"]["message"]
    extra = ["--work-dir", str(work), "--no-resume", "--cfg-options", "train_cfg.max_iters=30"]
    assert smoke(ade_root, tmp_path / "c", *extra) == 0


def test_bad_inputs_stop_before_anything_runs(ade_root, tmp_path, capsys):
    assert smoke(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "not an ADE20K root" in capsys.readouterr().err
    broken = tmp_path / "broken"
    for split in ("training", "validation"):
        (broken / "images" / split).mkdir(parents=True)
        (broken / "annotations" / split).mkdir(parents=True)
        (broken / "images" / split / "a.jpg").write_bytes(b"")
    assert smoke(broken, tmp_path / "out") == 2
    assert "do not pair up" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.json"))
    argv = ["run", "--backbone", BACKBONE, "--task", "imagenet-knn", "--cfg-options", "a=1"]
    assert main(argv) == 2
    assert "--cfg-options is for the mmengine tasks" in capsys.readouterr().err


def test_miou_equals_mmseg_iou_metric_on_the_same_predictions():
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    from harmony_bench.dense.seg_metric import PerClassIoUMetric

    classes = tuple(f"class{i}" for i in range(6))
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(5):
        gt = torch.from_numpy(rng.integers(0, 6, (1, 24, 32)))
        gt[:, :4] = 255  # ignored pixels
        pred = torch.where(
            torch.from_numpy(rng.random((1, 24, 32)) < 0.6),
            gt.clamp(max=5),
            torch.from_numpy(rng.integers(0, 6, (1, 24, 32))),
        )
        sample = SegDataSample(gt_sem_seg=PixelData(data=gt), pred_sem_seg=PixelData(data=pred))
        samples.append(sample.to_dict())
    ours, reference = PerClassIoUMetric(), IoUMetric()
    for metric in (ours, reference):
        metric.dataset_meta = {"classes": classes}
        metric.process({}, samples)
    got, want = ours.evaluate(len(samples)), reference.evaluate(len(samples))
    assert got == want  # aAcc, mIoU, mAcc: mmseg's own numbers
    gts = np.concatenate([s["gt_sem_seg"]["data"].numpy().ravel() for s in samples])
    preds = np.concatenate([s["pred_sem_seg"]["data"].numpy().ravel() for s in samples])
    keep = gts != 255
    for i, name in enumerate(classes):
        inter = np.sum((gts == i) & (preds == i) & keep)
        union = np.sum(((gts == i) | (preds == i)) & keep)
        assert ours.per_class[name]["IoU"] == pytest.approx(round(100 * inter / union, 2), abs=0.01)
    assert np.mean([ours.per_class[c]["IoU"] for c in classes]) == pytest.approx(got["mIoU"], abs=0.02)
    counts = np.bincount(gts[keep], minlength=6)
    assert ours.constant_baseline_mIoU == pytest.approx(round(100 * counts.max() / counts.sum() / 6, 2))
    assert json.dumps(ours.per_class)  # plain data for the record
