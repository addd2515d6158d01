"""Both detectors end to end through the CLI on synthetic COCO: records, learning, resume, re-scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harmony_bench import events
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.results import load_record, validate_record

pytestmark = pytest.mark.mm
BACKBONE = "vit-tiny-random"
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
SHORT = ("--cfg-options", "train_cfg.max_epochs=2", "train_cfg.val_interval=2")  # 2 x 2 iterations


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco8")
    synthesize("coco", out, n=8, seed=0)
    return out


def smoke(root: Path, output: Path, detector: str, *extra: str) -> int:
    argv = ["run", "--backbone", BACKBONE, "--task", "coco", "--detector", detector, "--preset", "smoke"]
    return main([*argv, "--data-root", str(root), "--output", str(output), *extra])


def records(output: Path) -> list[dict]:
    return [load_record(p) for p in sorted(output.glob("*.json"))]


def rescore(root: Path, detections: str, kind: str) -> list[float]:
    """pycocotools' COCOeval straight on the detections file the run kept, in percent."""
    gt = COCO(str(root / "annotations" / "instances_val2017.json"))
    results = json.loads(Path(detections).read_text())
    if kind == "segm":  # the segm results format has no boxes (loadRes would take box areas for sizes)
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    evaluator = COCOeval(gt, gt.loadRes(results), kind)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [100 * s for s in evaluator.stats[:6]]


def test_cascade_smoke_writes_a_valid_record_and_resumes(tiny_root, tmp_path):
    def crash(iteration: int, work_dir: str) -> None:
        if iteration == 6:  # in epoch 2 (4 iterations an epoch), after the epoch-1 checkpoint
            raise RuntimeError("simulated interruption")

    work = ("--work-dir", str(tmp_path / "work"))
    with events.subscribed("train_iter", crash):
        assert smoke(tiny_root, tmp_path / "out", "cascade-mask-rcnn", *work, *SHORT) == 1  # a failed record
    assert smoke(tiny_root, tmp_path / "out", "cascade-mask-rcnn", *work, *SHORT) == 0
    failed, done = sorted(records(tmp_path / "out"), key=lambda r: r["status"]["state"] == "completed")
    assert (
        failed["status"]["state"] == "failed"
        and "simulated interruption" in failed["status"]["error"]["message"]
    )
    assert validate_record(done) == []
    assert done["task"]["name"] == "coco" and done["dataset"]["synthetic"] is True
    assert (
        done["artifacts"]["detector"] == "cascade-mask-rcnn" and done["artifacts"]["resumed_from_iter"] == "4"
    )
    assert "CascadeRoIHead" in Path(done["artifacts"]["mm_config"]).read_text()
    for kind in ("bbox", "segm"):
        assert set(done["metrics"][kind]) == set(AP_NAMES)
        assert all(m["unit"] == "%" for m in done["metrics"][kind].values())
        assert Path(done["artifacts"][f"detections_{kind}"]).is_file()


@pytest.mark.slow
def test_mask_rcnn_smoke_learns_and_its_ap_is_pycocotools_on_its_detections(tmp_path_factory, tmp_path):
    root = tmp_path_factory.mktemp("coco48")
    synthesize("coco", root, n=48, seed=0)
    assert smoke(root, tmp_path / "out", "mask-rcnn") == 0
    (record,) = records(tmp_path / "out")
    assert validate_record(record) == []
    assert "StandardRoIHead" in Path(record["artifacts"]["mm_config"]).read_text()
    box = record["metrics"]["bbox"]
    assert box["AP"]["value"] > 1.0 and box["AP50"]["value"] > 4.0, box  # chance is ~0 for boxes
    for kind in ("bbox", "segm"):
        stats = rescore(root, record["artifacts"][f"detections_{kind}"], kind)
        for name, value in zip(AP_NAMES, stats, strict=True):
            got = record["metrics"][kind][name]["value"]
            assert got is None if value < 0 else got == pytest.approx(value, abs=0.05 + 1e-9), (kind, name)
