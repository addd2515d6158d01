"""The demo suite end to end (what `make demo` runs): synthetic data, every smoke task, table, leaderboard.

The one end-to-end run of the demo in the test suite (~5 min on 2 CPU cores): a tiny Harmony pretrained
by `harmony-bench pretrain --preset smoke`, every smoke task on vit-tiny-random, the frozen-feature tasks on
the pretrained backbone; test_cli only checks that the demo suite is declared.
"""

import json

import pytest

from harmony_bench.cli import main
from harmony_bench.suites import load_suite
from harmony_bench.suites.state import read_state


@pytest.mark.slow
@pytest.mark.mm
def test_demo_suite_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["suite", "run", "demo", "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    suite = load_suite("demo", out)
    records = sorted((out / "records").glob("*.json"))
    assert len(records) == len(suite.cells) == 12
    for path in records:
        record = json.loads(path.read_text())
        assert record["status"]["state"] == "completed", record["status"]
        assert record["dataset"]["synthetic"] is True  # labelled synthetic, written under its own directory
        assert record["task"]["preset"] == "smoke"
        if record["task"]["name"] == "coco":  # the smoke Mask R-CNN learns the synthetic shapes
            assert record["metrics"]["bbox"]["AP"]["value"] > 0.5
    recall = {  # the pretrained tiny Harmony matches captions to images better than the random init
        r["backbone"]["name"]: r["metrics"]["mean_recall"]["value"]
        for r in map(json.loads, (p.read_text() for p in records))
        if r["task"]["name"] == "retrieval-coco"
    }
    assert recall["pretrained-harmony-harmony"] > recall["vit-tiny-random"], recall
    assert any(out.rglob("pretrained-harmony-harmony.yaml"))  # the pretraining step exported a card
    state = read_state(out / ".suite" / "demo" / "state.json")
    assert {e["status"] for e in state["cells"].values()} == {"done"}
    assert all(e["wall_s"] > 0 and e["peak_rss_mb"] > 0 for e in state["cells"].values())
    assert all((e["gpus"], e["gpu_hours"]) == (0, 0.0) for e in state["cells"].values())  # a CPU run
    # the comparison table (headline metrics, preset and synthetic in the column) and the leaderboard files
    assert "imagenet-linear / top1 [v2, smoke, synthetic]" in printed
    assert "coco / bbox.AP [v2, smoke, synthetic]" in printed  # coco protocol v2 (issue 14)
    assert "retrieval-coco / mean_recall [v1, smoke, synthetic]" in printed
    assert "[v1, smoke, synthetic]" in (out / "TABLE.md").read_text()
    board = (out / "LEADERBOARD.md").read_text()
    assert "SYNTHETIC" in board and "vit-tiny-random [synthetic]" in board
    assert "pretrained-harmony-harmony [synthetic]" in board
    assert (out / "leaderboard.html").is_file() and (out / "figures" / "heatmap.svg").is_file()
    # a rerun finds every record and runs nothing
    assert main(["suite", "run", "demo", "--output", str(out), "--no-progress", "--no-leaderboard"]) == 0
    assert "12 cells, 12 done, 0 to run" in capsys.readouterr().out
    # without the state file, the records are recognised as the cells' results by their identity
    # (card, task, preset, protocol version, resolved config hash, seed, synthetic data)
    (out / ".suite" / "demo" / "state.json").unlink()
    assert main(["suite", "run", "demo", "--output", str(out), "--no-progress", "--no-leaderboard"]) == 0
    assert "12 cells, 12 done, 0 to run" in capsys.readouterr().out
    assert len(list((out / "records").glob("*.json"))) == 12
    assert "Unreadable" not in board  # the synthetic data next to the records is never read as records
