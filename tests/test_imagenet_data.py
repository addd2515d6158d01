"""ImageNet data layer: layout checks, corrupt images, class names, identity, file-list hash."""

import json

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from harmony_bench.data.imagenet import (
    DatasetLayoutError,
    check_imagenet_root,
    class_names,
    dataset_identity,
    file_list_hash,
    imagenet_split,
    skip_corrupt_collate,
)
from harmony_bench.data.synth import synthesize

from ._imagenet_util import copy_tree, truncate

# The first two wnids of ImageNet-1k in sorted order, and their names.
TENCH, GOLDFISH = "n01440764", "n01443537"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return synthesize("imagenet", tmp_path_factory.mktemp("in") / "root", n=20, size=32).root


def fake_real_root(root, wnids=(TENCH, GOLDFISH), splits=("train", "val")):
    """A real-looking root: wnid folders with one small JPEG each, no synthetic manifest."""
    for split in splits:
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8), (200, 10, 10)).save(root / split / wnid / f"{wnid}_1.JPEG")
    return root


def test_missing_and_malformed_roots_say_how_to_prepare(tmp_path):
    cases = [
        (None, "no ImageNet root given"),
        (tmp_path / "absent", "does not exist"),
        (fake_real_root(tmp_path / "noval", splits=("train",)), "has no val/ folder"),
    ]
    flat = fake_real_root(tmp_path / "flat", splits=("train",))
    (flat / "val").mkdir()
    Image.new("RGB", (8, 8)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    cases.append((flat, "must be sorted into val/<wnid>/"))
    empty = tmp_path / "empty"
    (empty / "train" / TENCH).mkdir(parents=True)
    (empty / "val" / TENCH).mkdir(parents=True)
    cases.append((empty, "hold no images"))
    for root, expected in cases:
        with pytest.raises(DatasetLayoutError) as info:
            check_imagenet_root(root)
        message = str(info.value)
        assert expected in message
        assert "valprep" in message and "harmony-bench data synth --kind imagenet" in message
        assert isinstance(info.value, FileNotFoundError)


def test_synthetic_identity_and_names(synth_root):
    assert check_imagenet_root(synth_root) == synth_root.resolve()
    identity = dataset_identity(synth_root)
    assert identity["name"] == "imagenet-synthetic" and identity["synthetic"] is True
    assert identity["manifest"]["kind"] == "imagenet"
    names = class_names(synth_root)
    assert names[:2] == ["red circle", "green square"] and len(names) == 10
    assert class_names(synth_root, "slip") == names  # synthetic roots use their manifest for every style
    assert class_names(synth_root, "wnid")[0] == "n90000000"


def test_real_wnids_get_clip_wordnet_and_file_names(tmp_path):
    root = fake_real_root(tmp_path / "real")
    identity = dataset_identity(root)
    assert identity == {
        "name": "imagenet-1k",
        "root": str(root.resolve()),
        "synthetic": False,
        "manifest": None,
    }
    assert class_names(root) == ["tench", "goldfish"]
    assert class_names(root, "wordnet") == ["tench", "goldfish"]
    assert class_names(root, "slip") == ["tench", "goldfish"]  # SLIP's labels.json ImageNet names are CLIP's
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"imagenet": [f"name {i}" for i in range(1000)]}))
    assert class_names(root, "slip", labels_file=labels) == ["name 0", "name 1"]
    tsv = tmp_path / "names.txt"
    tsv.write_text(f"{GOLDFISH}\tgold fish\n{TENCH}\ttench fish\n")
    assert class_names(root, labels_file=tsv) == ["tench fish", "gold fish"]
    with pytest.raises(ValueError, match="2 classes"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(["only one"]))
        class_names(root, labels_file=bad)
    unknown = fake_real_root(tmp_path / "unknown", wnids=("n99999999",))
    with pytest.raises(ValueError, match="not in the clip ImageNet-1k class names"):
        class_names(unknown)


def test_corrupt_images_are_recorded_and_dropped(synth_root, tmp_path):
    root = copy_tree(synth_root, tmp_path / "root")
    dataset = imagenet_split(root, "val", transform=None, corrupt_log=tmp_path / "corrupt.jsonl")
    bad_path = dataset.samples[1][0]
    truncate(type(root)(bad_path))
    assert dataset[1] is None and dataset[0] is not None
    assert [p for p, _ in dataset.corrupt] == [bad_path]
    batch = skip_corrupt_collate([(torch.zeros(3), 0), None, (torch.ones(3), 1)])
    assert batch[0].shape == (2, 3) and batch[1].tolist() == [0, 1]
    assert skip_corrupt_collate([None, None]) is None


def test_corrupt_images_in_worker_processes_reach_the_main_process(synth_root, tmp_path):
    from torchvision import transforms

    root = copy_tree(synth_root, tmp_path / "root")
    log = tmp_path / "corrupt.jsonl"
    dataset = imagenet_split(root, "train", transforms.ToTensor(), corrupt_log=log)
    truncate(type(root)(dataset.samples[3][0]))
    loader = DataLoader(dataset, batch_size=8, num_workers=1, collate_fn=skip_corrupt_collate)
    seen = sum(len(targets) for _, targets in loader)
    assert seen == len(dataset) - 1
    assert [p for p, _ in dataset.corrupt] == [dataset.samples[3][0]]
    assert "Truncated" in dataset.corrupt[0][1] or "truncated" in dataset.corrupt[0][1]


def test_file_list_hash_changes_with_the_files(synth_root, tmp_path):
    root = copy_tree(synth_root, tmp_path / "root")
    before = file_list_hash(imagenet_split(root, "val", None))
    assert file_list_hash(imagenet_split(root, "val", None)) == before
    Image.new("RGB", (8, 8)).save(root / "val" / "n90000000" / "extra.JPEG")
    assert file_list_hash(imagenet_split(root, "val", None)) != before
