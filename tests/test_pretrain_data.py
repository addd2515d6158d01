"""Pretraining data and bad input: the three layouts, corrupt images counted and skipped, clear errors."""

import shutil
from pathlib import Path

import pytest

from harmony_bench.cli import main
from harmony_bench.pretrain.data.sources import open_source


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from harmony_bench.data.synth import captions

    root = tmp_path_factory.mktemp("captions") / "c"
    captions.write(root, n=24, size=40)
    return root


def test_three_layouts_give_the_same_pairs(synth):
    pairs = open_source(f"cc3m:{synth / 'pairs'}")
    shards = open_source(f"wds:{synth / 'shards'}")
    table = open_source(f"tsv:{synth / 'captions.tsv'}")
    auto = open_source(str(synth / "shards"))
    assert len(pairs) == len(shards) == len(table) == len(auto) == 24
    assert [c for _, c in pairs] == [c for _, c in shards] == [c for _, c in table]
    for (a, _), (b, _), (c, _) in zip(pairs[:5], shards[:5], table[:5], strict=True):
        assert a.read() == b.read() == c.read()  # same JPEG bytes, read from the tar by offset


def test_csv_with_header_and_relative_paths(synth, tmp_path):
    rows = ["image,caption"] + [
        f"{p.path},a caption {i}" for i, (p, _) in enumerate(open_source(f"cc3m:{synth / 'pairs'}")[:3])
    ]
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    samples = open_source(f"csv:{tmp_path / 'x.csv'}")
    assert [c for _, c in samples] == ["a caption 0", "a caption 1", "a caption 2"]


def copy_with_bad_images(synth: Path, dst: Path) -> Path:
    """The pairs layout with one truncated JPEG, one non-image .jpg, and a caption without an image."""
    shutil.copytree(synth / "pairs", dst)
    images = sorted(dst.rglob("*.jpg"))
    data = images[2].read_bytes()
    images[2].write_bytes(data[: len(data) // 3])
    images[5].write_bytes(b"this is not a jpeg")
    (images[0].parent / "orphan.txt").write_text("a caption with no image")
    return dst


def test_corrupt_images_are_counted_and_skipped(synth, tmp_path, caplog):
    from harmony_bench.pretrain.data.dataset import PretrainDataset

    from ._pretrain_util import tiny_cfg

    root = copy_with_bad_images(synth, tmp_path / "bad")
    cfg = tiny_cfg("mae")
    ds = PretrainDataset(open_source(f"cc3m:{root}"), cfg, 8, None)
    assert len(ds) == 24
    skipped = [ds[i]["skipped"] for i in range(len(ds))]
    assert skipped[2] == 1 and skipped[5] == 1 and sum(skipped) == 2
    assert "skipping unreadable image" in caplog.text and "000000002.jpg" in caplog.text
    # index 2 fell through to the next readable sample (index 3): same image, same crops
    same = PretrainDataset(open_source(f"cc3m:{synth / 'pairs'}"), cfg, 8, None)
    assert ds[2]["crops"][0].shape == same[3]["crops"][0].shape


def test_too_many_bad_images_in_a_row_is_an_error(synth, tmp_path):
    from harmony_bench.pretrain.data.dataset import PretrainDataset

    from ._pretrain_util import tiny_cfg

    root = tmp_path / "all-bad"
    shutil.copytree(synth / "pairs", root)
    for p in root.rglob("*.jpg"):
        p.write_bytes(b"junk")
    ds = PretrainDataset(open_source(f"cc3m:{root}"), tiny_cfg("mae", ["data.max_bad_samples=3"]), 8, None)
    with pytest.raises(RuntimeError, match="4 unreadable images in a row"):
        ds[0]


def test_training_run_skips_corrupt_images(synth, tmp_path, capsys):
    root = copy_with_bad_images(synth, tmp_path / "bad")
    out = tmp_path / "run"
    rc = main(
        [
            "pretrain",
            "--method",
            "mae",
            "--preset",
            "smoke",
            "--data",
            f"cc3m:{root}",
            "--output",
            str(out),
            "--batch-size",
            "12",
            "--max-steps",
            "2",
            "--set",
            "log.every_steps=1",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert '"skipped_images": 2' in printed
    assert (out / "export").is_dir() and (out / "checkpoint.pt").is_file()


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = main(
        [
            "pretrain",
            "--method",
            "clip",
            "--data",
            f"cc3m:{tmp_path / 'nope'}",
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "nope" in err


def test_empty_data_dir_and_no_data_are_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "pretrain",
                "--method",
                "clip",
                "--data",
                str(tmp_path / "empty"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no image-caption pairs found" in capsys.readouterr().err
    assert main(["pretrain", "--method", "clip", "--output", str(tmp_path / "o2")]) == 2
    assert "--data is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "dino"], "unknown method 'dino'"),
        (["--method", "clip+dino"], "unknown method 'clip+dino'"),
        (["--method", "clip", "--preset", "huge"], "unknown preset 'huge'"),
        (["--method", "clip", "--set", "optim.lrr=1"], "unknown pretraining setting 'lrr'"),
        (["--method", "clip", "--set", "optim.lr"], "--set expects KEY=VALUE"),
    ],
)
def test_bad_method_preset_and_settings(tmp_path, capsys, args, message):
    rc = main(["pretrain", *args, "--data", str(tmp_path), "--output", str(tmp_path / "o")])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_collate_cuts_captions_after_the_longest():
    import torch

    from harmony_bench.pretrain.data.dataset import collate

    def item(n_tokens):
        text = torch.zeros(77, dtype=torch.long)
        text[:n_tokens] = torch.arange(1, n_tokens + 1)
        mask = torch.zeros(77, dtype=torch.bool)
        mask[1] = True
        return {
            "crops": [torch.zeros(3, 4, 4)],
            "skipped": 0,
            "text": text,
            "text_masked": text,
            "text_mask": mask,
        }

    batch = collate([item(5), item(9), item(3)])
    assert batch["text"].shape == batch["text_masked"].shape == batch["text_mask"].shape == (3, 9)
    assert batch["text"][1].tolist() == list(range(1, 10)) and batch["text_mask"][:, 1].all()
    assert batch["crops"][0].shape == (3, 3, 4, 4) and batch["skipped"] == 0
