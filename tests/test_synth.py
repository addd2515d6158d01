"""Synthetic datasets are read back by the real readers of the real benchmarks."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from harmony_bench.data.synth import MANIFEST_NAME, synthesize
from harmony_bench.registry import UnknownNameError


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_imagenet_reads_as_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder

    summary = synthesize("imagenet", tmp_path / "in", n=20, size=32)
    manifest = json.loads((summary.root / MANIFEST_NAME).read_text())
    train, val = ImageFolder(summary.root / "train"), ImageFolder(summary.root / "val")
    assert train.classes == sorted(manifest["wnids"]) == val.classes
    assert len(train) == manifest["splits"]["train"] == 20 and len(val) == manifest["splits"]["val"]
    assert all(w.startswith("n9") and len(w) == 9 for w in train.classes)
    names = (summary.root / "classnames.txt").read_text().split("\n")[:-1]
    assert names == manifest["classes"] and len(names) == 10
    image, label = train[0]
    assert image.size == (32, 32) and label == 0


def test_imagenet_honours_n_exactly(tmp_path):
    summary = synthesize("imagenet", tmp_path / "in", n=25, size=16)
    assert summary.manifest["splits"] == {"train": 25, "val": 10}  # at least one val image per class
    assert sum(1 for _ in (summary.root / "train").rglob("*.JPEG")) == 25
    few = synthesize("imagenet", tmp_path / "few", n=3, size=16)
    assert few.manifest["classes"] == ["red circle", "green square", "blue triangle"]
    assert few.manifest["splits"] == {"train": 3, "val": 3}


def test_imagenet_is_learnable(tmp_path):
    """A nearest-centroid classifier on 8×8 thumbnails beats chance by far: labels follow content."""
    from torchvision.datasets import ImageFolder

    summary = synthesize("imagenet", tmp_path / "in", n=200, size=32, seed=1)

    def arrays(split):
        dataset = ImageFolder(summary.root / split)
        x = np.stack([np.asarray(img.resize((8, 8)), dtype=np.float32).ravel() / 255 for img, _ in dataset])
        return x, np.array(dataset.targets)

    x_train, y_train = arrays("train")
    x_val, y_val = arrays("val")
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(10)])
    predictions = ((x_val[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (predictions == y_val).mean() >= 0.5  # chance is 0.1


@pytest.mark.mm
def test_ade20k_reads_with_mmseg(tmp_path):
    from mmseg.datasets import ADE20KDataset

    from harmony_bench.data.synth.ade20k import REGIONS, SHAPE_CLASSES

    summary = synthesize("ade20k", tmp_path / "ade", n=8, size=64)
    assert summary.root.name == "ADEChallengeData2016"
    assert (summary.root / MANIFEST_NAME).is_file() and "ADEChallengeData2016" in summary.format()
    # the ids we write mean what their names say in ADE20K's 150-class list (PNG value = index + 1)
    ade_names = ADE20KDataset.METAINFO["classes"]
    for ade_id, name, _ in SHAPE_CLASSES.values():
        assert ade_names[ade_id - 1] == name
    for name, ade_id in REGIONS.items():
        assert ade_names[ade_id - 1] == name
    for split, count in (("training", 8), ("validation", 2)):
        dataset = ADE20KDataset(
            data_root=str(summary.root),
            data_prefix={"img_path": f"images/{split}", "seg_map_path": f"annotations/{split}"},
            pipeline=[],
        )
        assert len(dataset) == count
        info = dataset.get_data_info(0)
        assert info["reduce_zero_label"] is True
        labels = np.asarray(Image.open(info["seg_map_path"]))
        assert labels.dtype == np.uint8 and labels.shape == (64, 64)
        assert set(np.unique(labels)) <= set(range(151)) and 0 in labels and len(np.unique(labels)) >= 3


def test_coco_reads_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    summary = synthesize("coco", tmp_path / "coco", n=8, size=96)
    for split, count in (("train2017", 8), ("val2017", 2)):
        coco = COCO(str(summary.root / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == count and len(coco.getCatIds()) == 4
        assert len(coco.getAnnIds()) >= count
        for ann in coco.loadAnns(coco.getAnnIds()):
            image_info = coco.loadImgs(ann["image_id"])[0]
            assert (summary.root / split / image_info["file_name"]).is_file()
            mask = coco.annToMask(ann)
            assert mask.sum() == pytest.approx(ann["area"], rel=0.01)
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert x - 1 <= xs.min() and xs.max() <= x + w + 1 and y - 1 <= ys.min() and ys.max() <= y + h + 1
            # the object is really drawn there: its pixels are saturated colour, unlike the grey background
            pixels = np.asarray(Image.open(summary.root / split / image_info["file_name"]), dtype=int)[
                mask > 0
            ]
            assert np.median(pixels.max(1) - pixels.min(1)) > 80


def test_coco_ids_are_unique_across_splits(tmp_path):
    summary = synthesize("coco", tmp_path / "coco", n=8, size=64)
    payloads = [
        json.loads((summary.root / "annotations" / f"instances_{s}.json").read_text())
        for s in ("train2017", "val2017")
    ]
    image_ids = [img["id"] for p in payloads for img in p["images"]]
    ann_ids = [ann["id"] for p in payloads for ann in p["annotations"]]
    assert image_ids == list(range(1, len(image_ids) + 1)) and ann_ids == list(range(1, len(ann_ids) + 1))
    assert all(ann["area"] > 0 and ann["iscrowd"] == 0 for p in payloads for ann in p["annotations"])
    assert {c["id"]: c["name"] for c in payloads[0]["categories"]} == dict(
        enumerate(summary.manifest["classes"], start=1)
    )


def test_captions_three_layouts_agree(tmp_path):
    import webdataset as wds

    summary = synthesize("captions", tmp_path / "cap", n=6, size=32)
    pairs = {
        p.stem: p.with_suffix(".txt").read_text() for p in sorted((summary.root / "pairs").rglob("*.jpg"))
    }
    shard = summary.root / "shards" / "captions-000000.tar"
    samples = list(wds.WebDataset(str(shard), shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in samples] == sorted(pairs)
    for sample in samples:
        assert sample["txt"] == pairs[sample["__key__"]]
        assert sample["jpg"].size == (32, 32)
    rows = (summary.root / "captions.tsv").read_text().splitlines()
    assert rows[0] == "path\tcaption" and len(rows) == 7
    for row in rows[1:]:
        path, caption = row.split("\t")
        assert (summary.root / path).is_file() and caption == pairs[path.split("/")[-1][:-4]]
    # captions name what is drawn
    assert all(
        any(
            shape in text for shape in ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross")
        )
        for text in pairs.values()
    )


@pytest.mark.parametrize("kind", ["imagenet", "ade20k", "coco", "captions", "coco-captions", "flickr30k"])
def test_deterministic_for_a_seed(tmp_path, kind):
    first = synthesize(kind, tmp_path / "a", n=4, size=32, seed=3)
    second = synthesize(kind, tmp_path / "b", n=4, size=32, seed=3)
    other = synthesize(kind, tmp_path / "c", n=4, size=32, seed=4)
    assert tree_digest(first.root) == tree_digest(second.root) != tree_digest(other.root)
    assert json.loads((first.root / MANIFEST_NAME).read_text())["synthetic"] is True


def test_refuses_non_empty_output_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        synthesize("imagenet", out, n=2, size=16)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synthesize("imagenet", empty, n=2, size=16).root == empty.resolve()


def test_interrupted_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    from harmony_bench.data.synth import imagenet

    calls = []

    def failing_save(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(imagenet, "save_jpeg", failing_save)
    with pytest.raises(KeyboardInterrupt):
        synthesize("imagenet", tmp_path / "out", n=10, size=16)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [0, -1, True, 2.5])
def test_bad_n_is_a_clear_error(tmp_path, n):
    with pytest.raises(ValueError, match="--n must be a positive integer"):
        synthesize("coco", tmp_path / "x", n=n)
    assert list(tmp_path.iterdir()) == []  # validation happens before anything is written


def test_bad_size_and_kind(tmp_path):
    with pytest.raises(ValueError, match="--size must be an integer >= 16, got 0"):
        synthesize("imagenet", tmp_path / "x", size=0)
    with pytest.raises(ValueError, match="--size must be an integer >= 32"):
        synthesize("coco", tmp_path / "x", size=16)
    with pytest.raises(UnknownNameError, match="Did you mean 'imagenet'"):
        synthesize("imagenett", tmp_path / "x")


def test_summary_describes_the_dataset(tmp_path):
    summary = synthesize("captions", tmp_path / "cap", n=3, size=16)
    text = summary.format()
    for piece in (
        "captions",
        "(pass as --data-root)",
        str(summary.root),
        "train: 3 images",
        "never a benchmark",
    ):
        assert piece in text
    payload = json.loads(json.dumps(summary.to_dict()))
    assert payload["manifest"] == json.loads((summary.root / MANIFEST_NAME).read_text())
    assert payload["manifest"]["generator_version"] == 1 and payload["notes"]
