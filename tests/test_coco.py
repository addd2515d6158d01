"""COCO with (Cascade) Mask R-CNN through mmdet: paper protocol numbers, adapter shapes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harmony_bench.cards import backbone_registry, get_card
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.protocols import get_task
from harmony_bench.runner import RunOptions, TaskContext
from tests._dense_util import write_tiny_cards

pytestmark = pytest.mark.mm
BACKBONE = "vit-tiny-random"
SIZE_CARDS = {"s": "ibot-vit-s16-in1k", "b": "ibot-vit-b16-in1k"}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco")
    synthesize("coco", out, n=8, seed=0)
    return out


def paper_config(detector: str, size: str, schedule: str = "1x"):
    from harmony_bench.tasks.coco.mask_rcnn import build_config

    spec = get_task("coco")
    overrides = {"size": size, "detector": detector, "schedule": schedule}
    context = TaskContext(
        card=get_card(SIZE_CARDS[size]),
        task=spec,
        config=spec.resolve_config("paper", overrides),
        options=RunOptions(),
        work_dir=Path("work"),
    )
    return build_config(context)


# iBOT README commands (evaluation/README.md:L71-L87): ViT-S 8 GPUs x 4 images, layer decay 0.8; ViT-B 8 x 2,
# 0.75.  img_size: vit_small_...py crop_size (800, 1008); ViT-B: its _base_ model file's [672, 1092].
README_1X = {"s": (32, 0.8, (800, 1008)), "b": (16, 0.75, (672, 1092))}


def assert_common(cfg, width: int, drop_path: float) -> None:
    """What both detectors share: backbone, iBOT pyramid + FPN, AdamW with layer decay."""
    backbone = cfg.model.backbone
    assert backbone.type == "RegistryBackbone" and backbone.out_indices == [3, 5, 7, 11]
    assert backbone.drop_path_rate == drop_path and backbone.out_with_norm is False
    pyramid, fpn = cfg.model.neck
    assert (pyramid.type, pyramid.embed_dim, pyramid.rescales) == ("Feature2Pyramid", width, [4, 2, 1, 0.5])
    assert pyramid.norm_cfg.type == "SyncBN"
    assert (fpn.type, fpn.in_channels, fpn.out_channels, fpn.num_outs) == ("FPN", [width] * 4, 256, 5)
    optim = cfg.optim_wrapper
    assert (optim.optimizer.type, optim.optimizer.lr, optim.optimizer.weight_decay) == ("AdamW", 1e-4, 0.05)
    assert optim.constructor == "TimmLayerDecayOptimizerConstructor" and optim.paramwise_cfg.num_layers == 12
    assert cfg.total_batch_size == cfg.train_dataloader.batch_size  # one process: the whole batch
    assert "sources" not in cfg
    assert cfg.val_evaluator.type == "CocoMetric" and set(cfg.val_evaluator.metric) == {"bbox", "segm"}


def schedule(cfg) -> tuple[int, list[int]]:
    steps = next(s for s in cfg.param_scheduler if s.type == "MultiStepLR")
    return cfg.train_cfg.max_epochs, list(steps.milestones)


def test_cascade_protocol_numbers_are_ibot_harmony():
    for size, width, drop_path in (("s", 384, 0.1), ("b", 768, 0.2)):
        cfg = paper_config("cascade-mask-rcnn", size)
        assert_common(cfg, width, drop_path)
        roi = cfg.model.roi_head
        assert roi.type == "CascadeRoIHead" and roi.num_stages == 3
        stds = [head.bbox_coder.target_stds for head in roi.bbox_head]
        assert stds == [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        for head in roi.bbox_head:
            assert (head.type, head.num_shared_convs, head.num_shared_fcs) == ("ConvFCBBoxHead", 4, 1)
            assert head.norm_cfg.type == "SyncBN" and head.reg_decoded_bbox is True
            assert (head.loss_bbox.type, head.loss_bbox.loss_weight) == ("GIoULoss", 10.0)
            assert head.num_classes == 80
        flip, choice = cfg.train_dataloader.dataset.pipeline[2:4]
        assert flip.prob == 0.5 and choice.type == "RandomChoice"
        plain, (first, crop, second) = choice.transforms
        shorts = [s for s, _ in plain[0].scales]
        assert shorts == list(range(480, 801, 32)) and {m for _, m in plain[0].scales} == {1333}
        assert [s for s, _ in first.scales] == [400, 500, 600]
        assert (crop.crop_type, crop.crop_size) == ("absolute_range", (384, 600))
        assert second.scales == plain[0].scales
        assert schedule(cfg) == (12, [8, 11])  # the README run
        batch, decay, img_size = README_1X[size]
        assert (cfg.total_batch_size, cfg.optim_wrapper.paramwise_cfg.layer_decay_rate) == (batch, decay)
        assert tuple(cfg.model.backbone.img_size) == img_size
    s3x = paper_config("cascade-mask-rcnn", "s", "3x")  # vit_small_giou_4conv1f_coco_3x.py as it stands
    assert schedule(s3x) == (36, [27, 33]) and s3x.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert s3x.total_batch_size == 16
    b3x = paper_config("cascade-mask-rcnn", "b", "3x")
    assert schedule(b3x) == (36, [27, 33]) and b3x.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert b3x.total_batch_size == 16
    assert get_task("coco").resolve_config("paper")["amp"] == "fp16"


def test_mask_rcnn_protocol_is_the_standard_1x_fpn_detector():
    for size, width, drop_path in (("s", 384, 0.1), ("b", 768, 0.2)):
        cfg = paper_config("mask-rcnn", size)
        assert_common(cfg, width, drop_path)
        roi = cfg.model.roi_head
        assert (roi.type, roi.bbox_head.type, roi.mask_head.type) == (
            "StandardRoIHead",
            "Shared2FCBBoxHead",
            "FCNMaskHead",
        )
        assert schedule(cfg) == (12, [8, 11])
        batch, decay, img_size = README_1X[size]  # the cascade 1x protocol's backbone and optimizer
        assert (cfg.total_batch_size, cfg.optim_wrapper.paramwise_cfg.layer_decay_rate) == (batch, decay)
        assert tuple(cfg.model.backbone.img_size) == img_size
        resize = cfg.train_dataloader.dataset.pipeline[2]
        assert (resize.type, resize.scale, resize.keep_ratio) == ("Resize", (1333, 800), True)
    with pytest.raises(ValueError, match="no COCO protocol file"):
        paper_config("mask-rcnn", "s", "3x")


def test_detector_flag_and_protocol_show(capsys):
    assert main(["protocol", "show", "coco", "--size", "s", "--detector", "mask-rcnn"]) == 0
    text = capsys.readouterr().out
    assert "StandardRoIHead" in text and "CascadeRoIHead" not in text
    assert main(["protocol", "show", "coco", "--size", "b", "--set", "schedule=3x"]) == 0
    text = "".join(capsys.readouterr().out.split())
    assert "CascadeRoIHead" in text and "milestones=[27,33,]" in text and "layer_decay_rate=0.65" in text


def test_every_family_feeds_a_five_level_fpn(tmp_path, monkeypatch):
    from harmony_bench.dense import register_into

    names = write_tiny_cards(tmp_path / "cards", monkeypatch)
    register_into("mmdet")
    from mmdet.registry import MODELS

    x = torch.randn(1, 3, 96, 128)  # a detector batch: not square, not the pretraining size
    try:
        for family, name in names.items():
            backbone = MODELS.build(dict(type="RegistryBackbone", backbone=name, out_indices=[0, 1, 2, 3]))
            widths = [16, 32, 64, 128] if family == "swin" else [32] * 4
            necks = [dict(type="FPN", in_channels=widths, out_channels=256, num_outs=5)]
            if family != "swin":
                necks.insert(0, dict(type="Feature2Pyramid", embed_dim=32, rescales=[4, 2, 1, 0.5]))
            modules = [backbone, *(MODELS.build(n) for n in necks)]
            with torch.no_grad():
                out = x if family != "swin" else x[..., :64, :64]  # Swin: its window grid
                for module in modules:
                    out = module(out)
            patch = 14 if family == "dinov2" else 16  # ViT grid (padded), pyramid level 0 = 4x the grid
            first = (16, 16) if family == "swin" else (4 * -(-96 // patch), 4 * -(-128 // patch))
            assert [o.shape[1] for o in out] == [256] * 5, family
            assert [tuple(o.shape[-2:]) for o in out][0] == first, family
            assert [o.shape[-1] for o in out] == [-(-first[1] // 2**i) for i in range(5)], family
    finally:
        backbone_registry.cache_clear()


def _broken_root(root: Path, tmp_path: Path, edit) -> Path:
    """A copy of the synthetic root whose val json is changed by ``edit(data)``."""
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(root, copy)
    path = copy / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return copy


def _run(root: Path, output: Path) -> int:
    argv = ["run", "--backbone", BACKBONE, "--task", "coco", "--preset", "smoke", "--data-root", str(root)]
    return main([*argv, "--output", str(output)])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing json", "is not a COCO root"),
        ("unknown category", "category ids [99]"),
        ("no annotations", "has no annotations"),
        ("not json", "is not valid JSON"),
        ("missing image", "are not in"),
    ],
)
def test_bad_coco_data_stops_before_anything_runs(coco_root, tmp_path, capsys, case, message):
    if case == "missing json":
        broken = _broken_root(coco_root, tmp_path, lambda d: None)
        (broken / "annotations" / "instances_val2017.json").unlink()
    elif case == "unknown category":
        broken = _broken_root(coco_root, tmp_path, lambda d: d["annotations"][0].update(category_id=99))
    elif case == "no annotations":
        broken = _broken_root(coco_root, tmp_path, lambda d: d.update(annotations=[]))
    elif case == "not json":
        broken = _broken_root(coco_root, tmp_path, lambda d: None)
        (broken / "annotations" / "instances_val2017.json").write_text("{not json")
    else:
        broken = _broken_root(coco_root, tmp_path, lambda d: None)
        next((broken / "val2017").iterdir()).unlink()
    work = tmp_path / "work"
    rc = main(
        [
            "run", "--backbone", BACKBONE, "--task", "coco", "--preset", "smoke",
            "--data-root", str(broken), "--output", str(tmp_path / "out"), "--work-dir", str(work),
        ]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "val2017" in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))
    assert not work.exists()  # nothing ran: no work dir, no checkpoints


def test_detector_flag_is_only_for_coco(capsys):
    argv = ["run", "--backbone", BACKBONE, "--task", "imagenet-knn", "--detector", "mask-rcnn"]
    assert main(argv) == 2
    assert "--detector is for the coco task" in capsys.readouterr().err
