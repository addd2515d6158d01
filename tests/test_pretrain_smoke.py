"""``harmony-bench pretrain --method harmony --preset smoke``: losses fall; the registry loads the export."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from harmony_bench import load_backbone
from harmony_bench.cards import backbone_registry
from harmony_bench.cli import main
from harmony_bench.pretrain import checkpoint as ckpt
from harmony_bench.pretrain.config import load_config
from harmony_bench.pretrain.logger import read_log
from harmony_bench.pretrain.model import PretrainModel


@pytest.mark.slow
def test_smoke_preset_trains_and_exports_a_loadable_backbone(tmp_path, monkeypatch, capsys):
    out = tmp_path / "smoke"
    assert (
        main(
            ["pretrain", "--method", "harmony", "--preset", "smoke", "--output", str(out), "--device", "cpu"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "smoke check passed" in printed

    cfg = load_config("harmony", "smoke")
    batch, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    records = read_log(out / "log.jsonl")
    assert records[-1]["step"] == epochs * (int(cfg["data"]["synth_n"]) // batch)
    assert records[-1]["epoch"] == epochs - 1

    def mean(term, rows):
        return sum(r[term] for r in rows) / len(rows)

    first, last = records[:2], records[-3:]
    for term in ("mae", "mlm"):  # fixed targets: these must fall clearly
        assert mean(term, last) < 0.85 * mean(term, first), (term, mean(term, first), mean(term, last))
    # CLIP must pair images with captions better than chance: cross-entropy below ln(batch)
    assert mean("clip_hard", last) < math.log(batch) - 0.1 < mean("clip_hard", first)
    assert mean("loss", last) < mean("loss", first)
    assert records[-1]["hard_weight"] == pytest.approx(0.2, abs=1e-3)  # soft CLIP targets mixed in
    assert all(math.isfinite(r["loss"]) for r in records)

    (card,) = (out / "export").glob("*.yaml")
    (weights,) = (out / "export").glob("*.safetensors")
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(card.parent))
    backbone_registry.cache_clear()
    backbone = load_backbone(card.stem, str(weights))
    assert not backbone.report.missing and not backbone.report.unexpected

    state = ckpt.read_state(out / ckpt.LATEST)
    model = PretrainModel(state["config"])
    model.load_state_dict(state["model"])
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected_image = F.normalize(model.teacher.vit(images), dim=-1)  # EMA teacher + projection
        tokens = backbone.tokenize(["a photo of a red circle on a blue background.", "two shapes"])
        expected_text = F.normalize(model.teacher.text(tokens), dim=-1)
        assert torch.allclose(backbone.embed_image(images), expected_image, atol=1e-5)
        assert torch.allclose(backbone.embed_text(tokens), expected_text, atol=1e-5)
        maps = backbone.features(images)
    assert [tuple(m.shape) for m in maps] == [(3, 64, 4, 4)] * len(maps)
    # the teacher is the EMA, not the student
    assert not torch.allclose(model.teacher.vit.pos_embed, model.student.vit.pos_embed)

    # `harmony-bench run --backbone <card> --checkpoint <export>` evaluates it like any registry backbone
    from harmony_bench.data.synth import imagenet

    imagenet.write(tmp_path / "imagenet")
    args = ["run", "--backbone", card.stem, "--checkpoint", str(weights), "--task", "imagenet-zeroshot"]
    args += [
        "--preset",
        "smoke",
        "--data-root",
        str(tmp_path / "imagenet"),
        "--output",
        str(tmp_path / "records"),
    ]
    assert main(args) == 0
    assert len(list((tmp_path / "records").glob(f"{card.stem}__imagenet-zeroshot__*.json"))) == 1

    # the export is registered in the user's backbone store: `--backbone harmony` finds it, and a smoke
    # run needs no --data-root (the headline command: run --backbone harmony --task T --preset smoke)
    assert f"registered {card.stem} in the backbone store" in printed
    args = ["run", "--backbone", "harmony", "--task", "imagenet-knn", "--preset", "smoke"]
    assert main([*args, "--output", str(tmp_path / "records")]) == 0
    err = capsys.readouterr().err
    assert f"the newest harmony export in the backbone store, {card.stem}" in err and "no --data-root" in err
    (record,) = (tmp_path / "records").glob(f"{card.stem}__imagenet-knn__*.json")
    assert json.loads(record.read_text())["dataset"]["synthetic"]


def test_short_run_of_each_baseline_method(tmp_path):
    """Every named method builds, steps and exports (a few steps on the smoke data)."""
    from harmony_bench.data.synth import captions
    from harmony_bench.pretrain.trainer import RunOptions, train

    captions.write(tmp_path / "c", n=16, size=40)
    data = f"cc3m:{tmp_path / 'c' / 'pairs'}"
    for method in ("clip", "slip", "maskclip", "ibot", "mae"):
        out = tmp_path / method
        summary = train(
            RunOptions(
                method=method,
                preset="smoke",
                data=data,
                output=out,
                batch_size=8,
                max_steps=2,
                sets=["log.every_steps=1"],
                device="cpu",
            )
        )
        assert summary["steps"] == 2
        last = summary["last"]
        assert torch.isfinite(torch.tensor(last["loss"]))
        assert (out / "export").is_dir() and summary["card"].endswith(".yaml")
        text_card = "text_tower" in (out / "export" / summary["card"].split("/")[-1]).read_text()
        assert text_card == (method in ("clip", "slip", "maskclip")), method
