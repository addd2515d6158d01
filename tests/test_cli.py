import json
import subprocess
import sys

import pytest

from harmony_bench.cli import build_parser, main
from harmony_bench.results import load_record


def test_every_subcommand_has_help_with_examples(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    assert set(commands) >= {"list", "run", "data", "table", "validate", "demo"}
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_list_backbones_and_tasks(capsys):
    assert main(["list", "backbones"]) == 0
    assert "vit-tiny-random" in capsys.readouterr().out
    assert main(["list", "tasks", "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["ade20k"]["status"] == "available"


def test_run_unknown_backbone_suggests(capsys):
    assert main(["run", "--backbone", "vit-tiny-rand", "--task", "ade20k"]) == 2
    assert "Did you mean 'vit-tiny-random'" in capsys.readouterr().err


def test_run_missing_checkpoint_is_clear(capsys, toy_task, tmp_path):
    code = main(
        ["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--checkpoint", str(tmp_path / "x.pth")]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_writes_a_valid_record(capsys, toy_task, tmp_path):
    out = tmp_path / "out"
    argv = ["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--preset", "smoke", "--seed", "3"]
    assert main([*argv, "--output", str(out), "--set", "nested.a=5"]) == 0
    (path,) = out.glob("*.json")
    assert str(path) in capsys.readouterr().out
    record = load_record(path)
    assert record["status"]["state"] == "completed"
    assert record["metrics"]["score"]["value"] == 1 + 3  # smoke preset score + seed
    assert record["task"]["config"]["nested"] == {"a": 5, "b": 3}
    assert record["task"]["preset"] == "smoke" and record["seed"] == 3
    assert record["backbone"]["checkpoint"]["random_init"] is True


def test_failed_run_still_writes_a_failed_record(capsys, toy_task, tmp_path):
    out = tmp_path / "out"
    argv = [
        "run",
        "--backbone",
        "vit-tiny-random",
        "--task",
        toy_task,
        "--output",
        str(out),
        "--set",
        "explode=true",
    ]
    assert main(argv) == 1
    assert "the toy task was told to fail" in capsys.readouterr().err
    (path,) = out.glob("*.json")
    record = load_record(path)
    assert record["status"]["state"] == "failed"
    assert record["status"]["error"]["type"] == "RuntimeError"


def test_second_run_does_not_overwrite(toy_task, tmp_path):
    out = tmp_path / "out"
    argv = ["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--output", str(out)]
    assert main(argv) == 0 and main(argv) == 0
    assert len(list(out.glob("*.json"))) == 2


def test_validate_and_table(capsys, toy_task, tmp_path):
    out = tmp_path / "out"
    for seed in ("0", "2"):
        main(
            ["run", "--backbone", "vit-tiny-random", "--task", toy_task, "--output", str(out), "--seed", seed]
        )
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert "2 valid, 0 invalid" in capsys.readouterr().out
    assert main(["table", str(out)]) == 0
    table = capsys.readouterr().out
    assert "11.00 ± 1.41 (n=2)" in table  # scores 10 and 12 over two seeds
    assert "synthetic" in table
    (out / "broken.json").write_text('{"schema_version": 1')
    assert main(["validate", str(out)]) == 1
    assert "invalid" in capsys.readouterr().out


def test_console_script_and_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "harmony_bench", "list", "backbones"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "vit-tiny-random" in result.stdout


def test_demo_suite_is_declared_and_its_backbone_runs(capsys, tmp_path):
    """Cheap parts of `demo`: its suite lists the smoke cells (without running its pretraining step),
    the tiny backbone embeds synthetic data.

    The demo itself (every cell, table, leaderboard) runs once, in test_suite_demo.py.
    """
    from harmony_bench.cli.demo_cmd import show_backbone
    from harmony_bench.suites import load_suite
    from harmony_bench.suites.plan import data_root

    assert main(["suite", "show", "demo", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    cells = [line.split()[1] for line in out.splitlines() if line.startswith("  pending")]
    tasks = ["imagenet-zeroshot", "imagenet-knn", "imagenet-linear", "imagenet-finetune", "ade20k"]
    tasks += ["ade20k-linear", "coco", "retrieval-coco"]
    frozen = [*tasks[:3], "retrieval-coco"]  # the pretrained tiny Harmony runs no trained task (time budget)
    assert cells == [f"vit-tiny-random__{task}__smoke__seed0" for task in tasks] + [
        f"harmony__{task}__smoke__seed0" for task in frozen
    ]
    root = data_root(load_suite("demo", tmp_path / "demo"), "imagenet", {})
    assert (root / "harmony_bench_synth.json").is_file()
    show_backbone(root)
    assert "embed_image          (4, 32)" in capsys.readouterr().out


def test_data_synth_cli(capsys, tmp_path):
    assert (
        main(["data", "synth", "--kind", "coco", "--out", str(tmp_path / "c"), "--n", "2", "--size", "32"])
        == 0
    )
    assert "(pass as --data-root)" in capsys.readouterr().out
    assert main(["data", "synth", "--kind", "coco", "--out", str(tmp_path / "c")]) == 2
    assert "not empty" in capsys.readouterr().err
