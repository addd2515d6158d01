"""Box and mask AP in the record equal pycocotools' COCOeval run directly on the same detections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harmony_bench.data.synth import synthesize

pytestmark = pytest.mark.mm
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco")
    synthesize("coco", out, n=24, seed=3)
    return out


def noisy_detections(gt: COCO, rng: np.random.Generator) -> list[dict]:
    """Per image: each object found (jittered box and mask, 20% wrong class) plus two false positives."""
    cat_ids = sorted(gt.getCatIds())
    detections = []
    for image_id in sorted(gt.getImgIds()):
        info = gt.imgs[image_id]
        for ann in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])):
            x, y, w, h = ann["bbox"]
            dx, dy = rng.normal(0, 0.08 * w), rng.normal(0, 0.08 * h)
            box = [x + dx, y + dy, x + w + dx + rng.normal(0, 0.05 * w), y + h + dy]
            mask = np.roll(gt.annToMask(ann), int(round(dx)), axis=1)
            wrong = rng.random() < 0.2
            category = int(rng.choice(cat_ids)) if wrong else ann["category_id"]
            detections.append((image_id, category, box, mask, float(rng.uniform(0.3, 1.0))))
        for _ in range(2):  # false positives
            x, y = rng.uniform(0, info["width"] - 12), rng.uniform(0, info["height"] - 12)
            mask = np.zeros((info["height"], info["width"]), np.uint8)
            mask[int(y) : int(y) + 10, int(x) : int(x) + 10] = 1
            category = int(rng.choice(cat_ids))
            detections.append((image_id, category, [x, y, x + 10, y + 10], mask, float(rng.uniform(0, 0.6))))
    return [
        {"image_id": i, "category_id": c, "box": b, "mask": m, "score": s} for i, c, b, m, s in detections
    ]


def mmdet_samples(detections: list[dict], gt: COCO, cat_ids: list[int]) -> list[dict]:
    """The detections as the data samples mmdet's detector hands CocoMetric (labels index the classes)."""
    samples = []
    for image_id in sorted(gt.getImgIds()):
        mine = [d for d in detections if d["image_id"] == image_id]
        info = gt.imgs[image_id]
        pred = {
            "bboxes": torch.tensor([d["box"] for d in mine], dtype=torch.float32),
            "scores": torch.tensor([d["score"] for d in mine]),
            "labels": torch.tensor([cat_ids.index(d["category_id"]) for d in mine]),
            "masks": torch.from_numpy(np.stack([d["mask"] for d in mine]).astype(bool)),
        }
        samples.append(
            {"img_id": image_id, "ori_shape": (info["height"], info["width"]), "pred_instances": pred}
        )
    return samples


def reference_stats(gt: COCO, detections: list[dict], kind: str) -> np.ndarray:
    """COCOeval on the detections in the COCO results format, written here without mmdet."""
    results = []
    for d in detections:
        x0, y0, x1, y1 = (float(np.float32(v)) for v in d["box"])  # mmdet keeps boxes as float32
        entry = {"image_id": d["image_id"], "category_id": d["category_id"], "score": d["score"]}
        if kind == "bbox":
            entry["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        else:
            rle = mask_utils.encode(np.asfortranarray(d["mask"]))
            entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        results.append(entry)
    evaluator = COCOeval(gt, gt.loadRes(results), kind)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_record_ap_equals_pycocotools_on_the_same_detections(coco_root):
    from mmdet.evaluation import CocoMetric

    from harmony_bench.tasks.coco.data import annotation_file, check_root
    from harmony_bench.tasks.coco.mask_rcnn import record_metrics

    root, classes = check_root(coco_root)
    ann = str(annotation_file(root, "val2017"))
    gt = COCO(ann)
    cat_ids = sorted(gt.getCatIds())
    detections = noisy_detections(gt, np.random.default_rng(0))
    metric = CocoMetric(ann_file=ann, metric=["bbox", "segm"])  # what the protocol files configure
    metric.dataset_meta = {"classes": tuple(classes)}
    metric.process({}, mmdet_samples(detections, gt, cat_ids))
    record = record_metrics(metric.evaluate(len(gt.getImgIds())))
    for kind in ("bbox", "segm"):
        stats = reference_stats(gt, detections, kind)
        assert 0.2 < stats[0] < 0.95, (kind, stats)  # a non-trivial score, not 0 or 1
        for i, name in enumerate(STAT_NAMES):
            if stats[i] < 0:  # -1: no objects of that size in the set -> no value, not -100 %
                assert record[kind][name]["value"] is None
                continue
            # CocoMetric rounds to 3 decimals of a fraction, i.e. 0.1 AP in percent
            assert record[kind][name]["value"] == pytest.approx(100 * stats[i], abs=0.05 + 1e-9), (kind, name)
            assert record[kind][name]["unit"] == "%"


def test_a_wrong_class_mapping_changes_the_ap(coco_root):
    """Negative control: labels shifted by one class must not score the same (the test above can fail)."""
    from mmdet.evaluation import CocoMetric

    from harmony_bench.tasks.coco.data import annotation_file, check_root

    root, classes = check_root(coco_root)
    ann = str(annotation_file(root, "val2017"))
    gt = COCO(ann)
    cat_ids = sorted(gt.getCatIds())
    detections = noisy_detections(gt, np.random.default_rng(0))
    shifted = [{**d, "category_id": cat_ids[(cat_ids.index(d["category_id"]) + 1) % 4]} for d in detections]
    metric = CocoMetric(ann_file=ann, metric=["bbox"])
    metric.dataset_meta = {"classes": tuple(classes)}
    metric.process({}, mmdet_samples(shifted, gt, cat_ids))
    got = metric.evaluate(len(gt.getImgIds()))["coco/bbox_mAP"]
    assert abs(got - reference_stats(gt, detections, "bbox")[0]) > 0.1
    assert json.dumps(got)
