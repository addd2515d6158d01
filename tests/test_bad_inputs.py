"""Bad inputs through ``harmony_bench.cli.main``: exit code, the message's first line, and what was recorded.

Each case is one thing a careless or hostile user does (issue 17): damaged data, checkpoints that are
not what they claim, override typos, values that cannot be right, unusable output paths, malicious
files.  The rule under test: nothing ends ``completed`` with a number that means nothing, and what
can be refused before work starts is refused then (exit 2, no record), with a message that names the
file / key / value.  A run that fails once started writes a ``failed`` record (exit 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from harmony_bench.cards import backbone_registry, get_card
from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize

MARKER = "harmony_bench_pwned"
TINY_CARD = "tiny-timm-test"


class Payload:
    """Unpickling this would create the marker file."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


# --------------------------------------------------------------------------- shared data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Synthetic ImageNet, ADE20K and captions, a tiny card with a converter, and bad checkpoint files."""
    base = tmp_path_factory.mktemp("bad-inputs")
    out = {
        "imagenet": synthesize("imagenet", base / "imagenet").root,
        "ade20k": synthesize("ade20k", base / "ade").root,
        "captions": synthesize("captions", base / "captions").root,
    }
    cards = base / "cards"
    cards.mkdir()
    card = yaml.safe_load(Path(get_card("vit-tiny-random").path).read_text())
    card.update(
        name=TINY_CARD, family="test", description="vit-tiny-random weights read by the timm converter"
    )
    card.pop("text_tower")
    card["architecture"].pop("projection_dim")
    card["checkpoint"] = {
        "source": None,
        "format": "safetensors",
        "converter": "timm",
        "weights": "test",
        "sha256": None,
    }
    (cards / f"{TINY_CARD}.yaml").write_text(yaml.safe_dump(card))
    out["cards"] = cards
    broken = base / "broken-cards"
    broken.mkdir()
    (broken / "broken-card.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {MARKER}']\n")
    out["broken_cards"] = broken

    from safetensors.torch import save_file

    from harmony_bench.cards import card_from_file
    from harmony_bench.models.build import build_image_model

    state = build_image_model(card_from_file(cards / f"{TINY_CARD}.yaml")).state_dict()
    files = base / "files"
    files.mkdir()
    save_file({k: v.to(torch.int64).contiguous() for k, v in state.items()}, str(files / "int64.safetensors"))
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(files / "fp16.safetensors"))
    (files / "random.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    torch.save({"state_dict": state}, files / "good.pth")
    whole = (files / "good.pth").read_bytes()
    (files / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    torch.save({"state_dict": state, "payload": Payload()}, files / "evil.pth")
    out["files"] = files
    return out


@pytest.fixture
def ctx(data, tmp_path, monkeypatch) -> dict[str, Path]:
    """Per test: the cards registered, a fresh records dir, the working directory in tmp (for the marker)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "HARMONY_BENCH_BACKBONES", os.pathsep.join([str(data["cards"]), str(data["broken_cards"])])
    )
    monkeypatch.delenv("HARMONY_BENCH_CACHE", raising=False)
    backbone_registry.cache_clear()
    return {**data, "tmp": tmp_path, "out": tmp_path / "records"}


def ade_copy(ctx: dict[str, Path], damage: Callable[[Path], None]) -> Path:
    """A private copy of the synthetic ADE20K root with ``damage`` applied."""
    root = shutil.copytree(ctx["ade20k"], ctx["tmp"] / "ade" / "ADEChallengeData2016")
    damage(root)
    return root


def _edit_png(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    Image.fromarray(change(np.asarray(Image.open(path))).astype(np.uint8)).save(path)


def labels_plus_180(root: Path) -> None:
    """Issue 17 defect 1: add 180 to every non-zero validation label."""
    for path in (root / "annotations" / "validation").glob("*.png"):
        _edit_png(path, lambda a: np.where(a > 0, np.minimum(a.astype(int) + 180, 254), 0))


def train_label_200(root: Path) -> None:
    _edit_png(sorted((root / "annotations" / "training").glob("*.png"))[2], lambda a: np.where(a > 0, 200, 0))


def val_png_resized(root: Path) -> None:
    path = sorted((root / "annotations" / "validation").glob("*.png"))[0]
    Image.open(path).resize((40, 40), Image.NEAREST).save(path)


def val_png_rgb(root: Path) -> None:
    path = sorted((root / "annotations" / "validation").glob("*.png"))[1]
    Image.open(path).convert("RGB").save(path)


# --------------------------------------------------------------------------- the matrix


@dataclass
class Case:
    """One bad input: the argv (built from the fixtures), what must happen, and where to look."""

    argv: Callable[[dict], list[str]]
    code: int
    first_line: str  # regex the message's first line must match
    record: str  # "none" | "failed" | "completed"
    absent: list[str] = field(default_factory=list)  # text the message must not contain
    stream: str = "err"  # "err": stderr; "log": a logged warning (pytest owns the log handlers)


def run(task: str, root_key: str, *extra: str, backbone: str = "vit-tiny-random", preset: str = "smoke"):
    def argv(c: dict) -> list[str]:
        root = c.get(root_key, root_key)
        base = ["run", "--backbone", backbone, "--task", task, "--preset", preset, "--data-root", str(root)]
        return [
            *base,
            "--output",
            str(c["out"]),
            *(e.format(**{k: str(v) for k, v in c.items()}) for e in extra),
        ]

    return argv


def run_ade(damage: Callable[[Path], None], *extra: str):
    def argv(c: dict) -> list[str]:
        root = ade_copy(c, damage)
        return run("ade20k", "x", *extra)({**c, "x": root})

    return argv


CASES: dict[str, Case] = {
    # 1. labels outside 0..150 used to end `completed` with mIoU 0.0 and null accuracies
    "ade20k-val-labels-over-150": Case(
        run_ade(labels_plus_180),
        2,
        r"error: ade20k --data-root .*: the validation split cannot give a meaningful number: 4 label "
        r"map\(s\) with values outside 0\.\.150 \(255 = ignore is allowed\): "
        r"annotations/validation/ADE_val_00000001\.png \(values",
        "none",
    ),
    # 2. override typos used to sit unused in the record
    "knn-set-typo": Case(
        run("imagenet-knn", "imagenet", "--set", "knn.temprature=0.1"),
        2,
        r"error: unknown key 'knn\.temprature' in the overrides .*\(did you mean 'knn\.temperature'\?\)",
        "none",
    ),
    "ade20k-cfg-options-typo": Case(
        run("ade20k", "ade20k", "--cfg-options", "optim_wraper.optimizer.lr=0.5"),
        2,
        r"error: unknown --cfg-options key 'optim_wraper\.optimizer\.lr': the mmengine config has no "
        r"optim_wraper \(did you mean optim_wrapper\?\)",
        "none",
    ),
    # 3. values that cannot be right
    "linear-negative-lr": Case(
        run("imagenet-linear", "imagenet", "--set", "train.learning_rates=[-0.1]"),
        2,
        r"error: imagenet-linear: train\.learning_rates\[0\] = -0\.1 is not allowed: must be > 0",
        "none",
    ),
    "knn-temperature-hot": Case(
        run("imagenet-knn", "imagenet", "--set", "knn.temperature=hot"),
        2,
        r"error: imagenet-knn: knn\.temperature = 'hot' is not allowed: expected a number \(default 0\.07\)",
        "none",
    ),
    "knn-report-k-not-a-k": Case(
        run("imagenet-knn", "imagenet", "--set", "knn.report_k=3"),
        2,
        r"error: knn\.report_k 3 is not one of knn\.ks \[1, 5, 10, 20\]",
        "none",
    ),
    # 4. integer weights used to load "30/30" and complete; float ones are cast (and said so)
    "int64-safetensors": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/int64.safetensors", backbone=TINY_CARD),
        1,
        r"error: imagenet-knn on tiny-timm-test failed: .*did not load cleanly via 'timm': \d+ tensors "
        r"have a dtype that cannot be the model's weights",
        "failed",
    ),
    "fp16-safetensors": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/fp16.safetensors", backbone=TINY_CARD),
        0,
        r"^$",
        "completed",
    ),
    # 5. an output or work dir that cannot be written used to fail after all the work
    "output-under-a-file": Case(
        run("ade20k", "ade20k", "--output", "{tmp}/a-file/records"),
        2,
        r"error: --output .*/a-file/records cannot be created: .*/a-file is a file, not a directory",
        "none",
    ),
    "work-dir-is-a-file": Case(
        run("imagenet-knn", "imagenet", "--work-dir", "{tmp}/a-file"),
        2,
        r"error: --work-dir .*/a-file is a file, not a directory",
        "none",
    ),
    # 6. bad annotations used to fail after training, without naming the file
    "ade20k-train-label-200": Case(
        run_ade(train_label_200),
        2,
        r"error: .*the training split cannot give a meaningful number: 1 label map\(s\) with values outside "
        r"0\.\.150 .*annotations/training/ADE_train_00000003\.png \(values 200\)",
        "none",
    ),
    "ade20k-val-size-mismatch": Case(
        run_ade(val_png_resized),
        2,
        r"error: .*the validation split .*1 label map\(s\) of another size than their image: "
        r"annotations/validation/ADE_val_00000001\.png \(40x40 vs image 128x128\)",
        "none",
    ),
    "ade20k-val-rgb-annotation": Case(
        run_ade(val_png_rgb),
        2,
        r"error: .*the validation split .*not 8-bit single-channel PNGs \(mode L or P\): "
        r"annotations/validation/ADE_val_00000002\.png \(mode RGB\)",
        "none",
    ),
    # 9. a file that is not a checkpoint used to be answered with "pass --trust-checkpoint"
    "checkpoint-random-bytes": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/random.pth", backbone="ibot-vit-s16-in1k"),
        2,
        r"error: --checkpoint .*random\.pth is not a checkpoint: neither a torch\.save file",
        "none",
        absent=["trust"],
    ),
    "checkpoint-random-bytes-for-a-safetensors-card": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/random.pth", backbone=TINY_CARD),
        2,
        r"error: --checkpoint .*random\.pth is not a safetensors file \(the format its card reads\): "
        r"neither a torch\.save file",
        "none",
        absent=["trust"],
    ),
    "checkpoint-truncated": Case(
        run(
            "imagenet-knn", "imagenet", "--checkpoint", "{files}/truncated.pth", backbone="ibot-vit-s16-in1k"
        ),
        2,
        r"error: --checkpoint .*truncated\.pth is a truncated or damaged zip archive",
        "none",
        absent=["trust"],
    ),
    # 10. usage errors that used to be tracebacks
    "checkpoint-for-random-init-card": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/good.pth"),
        2,
        r"error: --checkpoint: backbone 'vit-tiny-random' is a random-init test card without a converter",
        "none",
    ),
    "set-malformed-yaml": Case(
        run("imagenet-knn", "imagenet", "--set", "knn.ks=[1,"),
        2,
        r"error: --set knn\.ks=\[1,: the value '\[1,' is not valid YAML",
        "none",
    ),
    "set-yaml-python-tag": Case(
        run(
            "imagenet-knn", "imagenet", "--set", f"knn.ks=!!python/object/apply:os.system ['touch {MARKER}']"
        ),
        2,
        r"error: --set knn\.ks=!!python.*is not valid YAML",
        "none",
    ),
    "resume-flag-on-a-task-without-checkpoints": Case(
        run("imagenet-knn", "imagenet", "--resume"),
        2,
        r"error: --resume/--no-resume: task 'imagenet-knn' keeps no checkpoints",
        "none",
    ),
    # right before, kept: pickles never run without --trust-checkpoint (now refused before any work)
    "checkpoint-malicious-pickle": Case(
        run("imagenet-knn", "imagenet", "--checkpoint", "{files}/evil.pth", backbone="ibot-vit-s16-in1k"),
        2,
        r"error: refusing to fully unpickle .*evil\.pth: loading it could run arbitrary code\. It needs "
        r"these non-allow-listed globals: (posix|os)\.system\. If you trust where the file comes from, "
        r"pass --trust-checkpoint",
        "none",
    ),
    # 12. one unparseable user card used to break every command; YAML tags never run
    "broken-user-card-other-commands-work": Case(
        lambda c: ["list", "backbones"],
        0,
        r"skipping backbone card .*broken-card\.yaml: .*broken-card\.yaml: not valid YAML",
        "none",
        stream="log",
    ),
    "broken-user-card-asked-for": Case(
        run("imagenet-knn", "imagenet", backbone="broken-card"),
        2,
        r"error: .*broken-card\.yaml: not valid YAML: could not determine a constructor for the tag",
        "none",
    ),
    # 8. a truncated pretraining checkpoint used to give a raw traceback
    "pretrain-truncated-checkpoint": Case(
        lambda c: [
            "pretrain",
            "--method",
            "mae",
            "--preset",
            "smoke",
            "--data",
            f"cc3m:{c['captions'] / 'pairs'}",
            "--output",
            str(c["tmp"] / "pt"),
        ],  # fmt: skip
        2,
        r"error: .*/pt/checkpoint\.pt is corrupt or truncated \(.*\), and the run keeps no readable earlier "
        r"checkpoint .*Pass --no-resume",
        "none",
    ),
    "pretrain-lr-hot": Case(
        lambda c: [
            "pretrain",
            "--method",
            "mae",
            "--preset",
            "smoke",
            "--data",
            f"cc3m:{c['captions'] / 'pairs'}",
            "--output",
            str(c["tmp"] / "pt"),
            "--set",
            "optim.lr=hot",
        ],  # fmt: skip
        2,
        r"error: pretrain: optim\.lr = 'hot' is not allowed: expected a number \(default 0\.0005\)",
        "none",
    ),
    # the baseline: good input completes
    "good-input-completes": Case(run("imagenet-knn", "imagenet"), 0, r"^$", "completed"),
}


def _prepare(case_id: str, c: dict) -> None:
    if case_id == "output-under-a-file" or case_id == "work-dir-is-a-file":
        (c["tmp"] / "a-file").write_text("not a directory")
    if case_id == "pretrain-truncated-checkpoint":
        (c["tmp"] / "pt").mkdir()
        whole = (c["files"] / "good.pth").read_bytes()  # any torch.save file, cut short
        (c["tmp"] / "pt" / "checkpoint.pt").write_bytes(whole[: len(whole) // 3])


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, ctx, capsys, caplog):
    case = CASES[case_id]
    _prepare(case_id, ctx)
    argv = case.argv(ctx)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    message = caplog.text if case.stream == "log" else captured.err
    lines = [line for line in message.splitlines() if line.strip()] or [""]
    first = lines[0] if case.stream == "err" else "\n".join(lines)
    assert code == case.code, f"{case_id}: exit {code}\n{captured.err[-3000:]}"
    assert re.search(case.first_line, first), f"{case_id}: {first!r}"
    for text in case.absent:
        assert text not in message, f"{case_id}: {message!r}"
    assert "Traceback" not in captured.err
    records = (
        [json.loads(p.read_text()) for p in sorted(ctx["out"].glob("*.json"))] if ctx["out"].is_dir() else []
    )
    states = [r["status"]["state"] for r in records]
    assert states == ([] if case.record == "none" else [case.record]), f"{case_id}: {states}"
    assert not (ctx["tmp"] / MARKER).exists(), "a pickle or YAML tag ran code"


# --------------------------------------------------------------------------- beyond one command


def test_ade20k_annotation_check_is_cached_by_the_dataset_identity(ctx, monkeypatch):
    """A clean split is checked once; the next run on the same copy only stats it; a change re-checks."""
    from harmony_bench.tasks.ade20k import validate

    root = ade_copy(ctx, lambda r: None)
    calls = []
    real = validate.check_split
    monkeypatch.setattr(validate, "check_split", lambda r, s, **k: calls.append(s) or real(r, s, **k))
    cache = ctx["tmp"] / "cache"
    assert set(validate.check_dataset(root, cache)) == {"training", "validation"}
    assert calls == ["training", "validation"] and len(list(cache.glob("ade20k-*.json"))) == 2
    validate.check_dataset(root, cache)
    assert calls == ["training", "validation"]  # cached: nothing decoded again
    train_label_200(root)  # the copy changed (size/mtime): checked again, and refused
    with pytest.raises(validate.AnnotationError, match="ADE_train_00000003.png"):
        validate.check_dataset(root, cache)
    assert calls[-1] == "training"


def test_label_255_is_ignore_as_mmseg_reads_it(ctx):
    """mmseg's reduce_zero_label maps raw 255 to 254 and back to 255 (ignore): allowed; 151..254 are not."""
    from harmony_bench.tasks.ade20k import validate

    root = ade_copy(ctx, lambda r: None)
    path = sorted((root / "annotations" / "validation").glob("*.png"))[0]
    _edit_png(path, lambda a: np.where(a == 0, 255, a))
    assert validate.check_split(root, "validation").ok
    # the rule restated from mmseg 1.2.2 LoadAnnotations._load_seg_map (reduce_zero_label=True):
    raw = np.arange(256, dtype=np.uint8)
    mapped = raw.copy()
    mapped[mapped == 0] = 255
    mapped = mapped - 1
    mapped[mapped == 254] = 255
    meaningful = {int(v) for v in raw if mapped[v] < validate.NUM_CLASSES or mapped[v] == 255}
    assert meaningful == set(range(0, validate.NUM_CLASSES + 1)) | {255}
    _edit_png(path, lambda a: np.where(a == 255, 151, a))
    report = validate.check_split(root, "validation")
    assert not report.ok and report.bad_values[0][1] == [151]


def test_integer_checkpoint_is_no_fit_in_backbones_inspect(ctx, capsys):
    path = ctx["files"] / "int64.safetensors"
    assert main(["backbones", "inspect", str(path), "--card", TINY_CARD, "--format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)["cards"][0]
    assert (
        verdict["status"] == "no"
        and "tensors have a dtype that cannot be the model's weights" in verdict["detail"]
    )
    assert (
        main(
            [
                "backbones",
                "inspect",
                str(ctx["files"] / "fp16.safetensors"),
                "--card",
                TINY_CARD,
                "--format",
                "json",
            ]
        )
        == 0
    )
    verdict = json.loads(capsys.readouterr().out)["cards"][0]
    assert (
        verdict["status"] == "clean"
        and "cast " in verdict["detail"]
        and "float16->float32" in verdict["detail"]
    )


def test_float16_weights_are_cast_and_the_load_report_says_so(ctx):
    from harmony_bench import load_backbone

    backbone = load_backbone(TINY_CARD, str(ctx["files"] / "fp16.safetensors"))
    assert backbone.report.cast == {"float16->float32": len(backbone.report.loaded)}
    assert f"cast {len(backbone.report.loaded)} float16->float32" in backbone.report.summary
    assert all(p.dtype == torch.float32 for p in backbone.model.parameters())
