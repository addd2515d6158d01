"""Suites: parsing, tolerance logic, `suite report`, cell-level resume after a kill, prerequisite steps."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from harmony_bench.cli import main
from harmony_bench.protocols import get_task, task_registry
from harmony_bench.suites import load_suite
from harmony_bench.suites.checks import Check, check, within
from harmony_bench.suites.plan import checkpoint_matches
from harmony_bench.suites.reported import load_reported
from harmony_bench.suites.spec import Expectation
from harmony_bench.suites.state import cell_status, lock_holder, read_state, take_lock, write_state
from harmony_bench.suites.worker import cost_fields, gpus_used
from harmony_bench.yaml_io import DataFileError
from tests.test_tables import make_record, top1

REPO = Path(__file__).resolve().parents[1]

# A task whose runner logs every call, can be told to hang (while a gate file exists) or to fail.
SLOW_RUNNER = """
import time
from pathlib import Path

from harmony_bench.results import metric
from harmony_bench.runner import TaskOutcome, TaskRunner


def run(context):
    cfg, seed = context.config, context.options.seed
    with open(cfg["calls"], "a") as f:
        f.write(f"{context.card.name} seed{seed}\\n")
    while seed == cfg["hang_seed"] and Path(cfg["gate"]).exists():
        time.sleep(0.1)
    if seed == cfg["fail_seed"] and Path(cfg["fail_gate"]).exists():
        raise RuntimeError("told to fail")
    root = context.options.data_root
    return TaskOutcome(
        metrics={"top1": metric(cfg["value"] + seed)},
        dataset={"name": "slow", "root": str(root), "synthetic": False, "manifest": None},
    )


RUNNER = TaskRunner(run=run)
"""


@pytest.fixture
def slow_suite(tmp_path, monkeypatch):
    """A 3-seed suite on a toy task; workers find the runner through PYTHONPATH."""
    modules, tasks = tmp_path / "modules", tmp_path / "tasks"
    modules.mkdir()
    tasks.mkdir()
    (modules / "slow_task_runner.py").write_text(SLOW_RUNNER)
    gate, fail_gate, calls = tmp_path / "gate", tmp_path / "fail-gate", tmp_path / "calls.txt"
    (tasks / "slow.yaml").write_text(
        textwrap.dedent(f"""
        name: slow
        description: toy task for suite tests
        runner: "slow_task_runner:RUNNER"
        protocol_version: "1"
        dataset: {{name: slow}}
        config: {{value: 70.0, hang_seed: 1, fail_seed: 2, gate: "{gate}", fail_gate: "{fail_gate}",
                  calls: "{calls}"}}
        metrics: [{{name: top1, higher_is_better: true}}]
        """)
    )
    monkeypatch.setenv("HARMONY_BENCH_TASKS", str(tasks))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), str(REPO)]))
    monkeypatch.syspath_prepend(str(modules))
    task_registry.cache_clear()
    suite = tmp_path / "toy-suite.yaml"
    suite.write_text(
        textwrap.dedent(f"""
        name: toy-suite
        description: three seeds of a toy task
        seeds: [0, 1, 2]
        data: {{slow: {{root: "{tmp_path}"}}}}
        backbones: {{vit-tiny-random: }}
        tasks: [{{name: slow, est_s: 1}}]
        expect:
          - {{backbone: vit-tiny-random, task: slow, metric: top1, value: 71.0, tolerance: 0.5,
              source: "made up for the test"}}
        """)
    )
    return {"suite": suite, "out": tmp_path / "out", "gate": gate, "fail_gate": fail_gate, "calls": calls}


def slow_record(s, seed: int, value: float, **kwargs) -> Path:
    """A record of the toy suite's cell for ``seed``: the slow task's resolved config, no preset."""
    kwargs.setdefault("config", get_task("slow").resolve_config(None))
    kwargs.setdefault("preset", None)
    return make_record(s["out"], "vit-tiny-random", "slow", seed, {"top1": top1(value)["top1"]}, **kwargs)


def _calls(s) -> list[str]:
    return s["calls"].read_text().split("\n")[:-1] if s["calls"].exists() else []


# --------------------------------------------------------------------------- tolerance


def test_tolerance_rule():
    assert within(81.2, None, 81.4, 0.3)
    assert within(81.1, float("nan"), 81.4, 0.3)  # boundary is inside
    assert not within(81.0, None, 81.4, 0.3)
    assert not within(81.0, 0.2, 81.4, 0.3)  # sigma 0: the seed spread does not widen it
    assert within(81.0, 0.2, 81.4, 0.3, sigma=1.0)
    assert not within(82.0, 0.2, 81.4, 0.3, sigma=1.0)


def test_check_verdicts():
    e = Expectation("b", "t", "top1", value=80.0, tolerance=0.5, source="s")
    summary = pd.DataFrame(
        [
            {"backbone": "b", "task": "t", "metric": "top1", "synthetic": False, "protocol_version": "1",
             "mean": 79.6, "std": float("nan"), "seeds": 1},
            {"backbone": "b", "task": "t", "metric": "top1", "synthetic": False, "protocol_version": "2",
             "mean": 78.0, "std": 0.1, "seeds": 2},
        ]
    )  # fmt: skip
    c = check(e, summary, "b", synthetic=False)  # the newest protocol version is the suite's
    assert (c.verdict, c.mean, c.seeds) == ("outside", 78.0, 2)
    assert c.delta == pytest.approx(-2.0)
    assert check(e, summary[summary["protocol_version"] == "1"], "b", False).verdict == "ok"
    assert check(e, summary, "other", False).verdict == "missing"
    assert check(e, summary.assign(synthetic=True), "b", True).verdict == "synthetic"
    assert isinstance(c, Check)
    # "10" is newer than "9" (text order would pick 9 and call the cell ok)
    versions = summary.assign(protocol_version=["10", "9"])
    assert (check(e, versions, "b", False).verdict, check(e, versions, "b", False).mean) == ("ok", 79.6)
    assert check(e, summary.assign(protocol_version=["9", "10"]), "b", False).verdict == "outside"
    # one version measured on two copies of the data: the check refuses to pick one row's seeds
    roots = summary.assign(protocol_version=["2", "2"], dataset=["imagenet-1k:/a", "imagenet-1k:/b"])
    with pytest.raises(ValueError, match=r"from 2 copies of the data \(imagenet-1k:/a, imagenet-1k:/b\)"):
        check(e, roots, "b", False)


# --------------------------------------------------------------------------- suite files


def test_shipped_suites_parse_and_reference_published_numbers():
    reported = load_reported().set_index("id")
    released = load_suite("released")
    assert len(released.expect) >= 25 and not released.synthetic
    for e in released.expect:
        assert any(c.backbone.key == e.backbone and c.task.name == e.task for c in released.cells)
    zeroshot = next(
        e
        for e in released.expect
        if (e.backbone, e.task) == ("slip-vit-s16-yfcc15m-25ep", "imagenet-zeroshot")
    )
    assert zeroshot.value == reported.loc["slip-vit-s-16-yfcc15m-25ep-imagenet-zeroshot-top1-slip", "value"]
    demo = load_suite("demo")
    assert demo.synthetic and demo.output.parts[-2:] == ("synthetic", "demo")
    assert {t.name for t in demo.tasks} >= {"imagenet-zeroshot", "imagenet-linear", "imagenet-knn"}
    paper = load_suite("harmony-paper")
    assert {b.after for b in paper.backbones} == set(paper.steps)
    full = load_suite("demo-full")
    assert {b.key for b in full.backbones} == {"harmony", "clip", "slip", "maskclip", "ibot", "mae"}


def test_reported_numbers_have_sources_and_unique_ids():
    reported = load_reported()
    assert reported["id"].is_unique
    assert (reported["source"].str.len() > 0).all() and (reported["paper"].str.len() > 0).all()
    ibot = reported[
        (reported["method"] == "iBOT") & (reported["arch"] == "ViT-B/16") & (reported["task"] == "ade20k")
    ]
    assert sorted(ibot["value"]) == [47.3, 50.0]  # DetailCLIP's protocol and iBOT's own README, both kept


def test_expectation_must_name_the_preset_when_a_cell_has_several(tmp_path):
    path = tmp_path / "two-presets.yaml"
    base = textwrap.dedent("""
        name: two-presets
        description: d
        backbones: {vit-tiny-random: }
        tasks: [{name: imagenet-knn, preset: smoke}, {name: imagenet-knn, preset: paper}]
        """)
    rule = "{backbone: vit-tiny-random, task: imagenet-knn, metric: top1, tolerance: 1, value: 1, source: s"
    path.write_text(base + f"expect: [{rule}}}]")
    with pytest.raises(DataFileError, match="needs a 'preset'"):
        load_suite(path)
    path.write_text(base + f"expect: [{rule}, preset: tiny}}]")
    with pytest.raises(DataFileError, match="no cell has preset 'tiny'"):
        load_suite(path)
    path.write_text(base + f"expect: [{rule}, preset: paper}}]")
    assert load_suite(path).expect[0].preset == "paper"


def test_bad_expectations_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    base = "name: bad\ndescription: d\nbackbones: {vit-tiny-random: }\ntasks: [imagenet-knn]\n"
    path.write_text(
        base + "expect: [{backbone: vit-tiny-random, task: imagenet-knn, metric: top1, tolerance: 1}]"
    )
    with pytest.raises(DataFileError, match="exactly one of"):
        load_suite(path)
    rule = "{backbone: vit-tiny-random, task: imagenet-knn, metric: top1, tolerance: 1, reported: no-such-id}"
    path.write_text(base + f"expect: [{rule}]")
    with pytest.raises(KeyError, match="no-such-id"):
        load_suite(path)
    linear_row = "ibot-vit-l-16-in-1k-ep-imagenet-linear-top1-ibot"  # a real id, of another task
    path.write_text(base + f"expect: [{rule.replace('no-such-id', linear_row)}]")
    with pytest.raises(DataFileError, match=f"{linear_row}' is imagenet-linear top1, not imagenet-knn top1"):
        load_suite(path)
    path.write_text(
        base + "expect: [{backbone: x, task: imagenet-knn, metric: top1, tolerance: 1, value: 1, source: s}]"
    )
    with pytest.raises(DataFileError, match="names no cell"):
        load_suite(path)


# --------------------------------------------------------------------------- report


def test_report_exits_nonzero_outside_tolerance(slow_suite, capsys):
    s = slow_suite
    args = ["suite", "report", str(s["suite"]), "--output", str(s["out"])]
    assert main(args) == 0  # nothing measured yet: listed as missing, not a failure
    assert "missing" in capsys.readouterr().out
    assert main([*args, "--require-all"]) == 1
    slow_record(s, 0, 71.2)
    # not the cell's result: other hyper-parameters, a smoke preset, synthetic data (all far off)
    slow_record(s, 1, 10.0, config={"value": 1.0})
    slow_record(s, 1, 10.0, preset="smoke")
    slow_record(s, 2, 10.0, synthetic=True)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| vit-tiny-random | slow | top1 | 71.00 | 71.20 (n=1) | +0.20 | ±0.5 | ok |" in out
    slow_record(s, 1, 73.2)
    assert main(args) == 1  # mean 72.2: outside ±0.5
    assert "outside" in capsys.readouterr().out


# --------------------------------------------------------------------------- running and resuming


def _suite_run(s, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "harmony_bench", "suite", "run", str(s["suite"]), "--output", str(s["out"])]
    return subprocess.Popen(
        [*argv, "--no-leaderboard", *extra], start_new_session=True, env=os.environ.copy()
    )


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_killed_suite_resumes_at_the_cell_level(slow_suite, capsys):
    """kill -9 of `suite run` alone (not its process group): its worker dies with it, no orphan runs on."""
    s = slow_suite
    s["gate"].touch()  # seed 1 hangs while the gate exists
    proc = _suite_run(s)
    state_file = s["out"] / ".suite" / "toy-suite" / "state.json"
    try:
        _wait_for(lambda: "vit-tiny-random seed1" in _calls(s))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the runner only, mid-cell: as `kill -9 PID` does
        proc.wait()
    suite = load_suite(s["suite"], s["out"])
    ids = [c.id for c in suite.cells]
    lock = read_state(state_file)["cells"][ids[1]]["lock"]
    _wait_for(lambda: lock_holder(lock) is None, timeout=10)  # the worker died with its parent
    s["gate"].unlink()  # an orphan worker would now finish seed 1 and write its record
    time.sleep(1.0)
    assert not list(s["out"].glob("*__seed1__*.json")), "an orphaned worker finished the cell"
    state = read_state(state_file)
    assert state["cells"][ids[0]]["status"] == "done"
    assert state["cells"][ids[1]]["status"] == "running"  # as the kill left it ...
    assert cell_status(state, ids[1]) == "failed"  # ... but its processes are gone: interrupted
    assert ids[2] not in state["cells"]
    cost = state["cells"][ids[0]]
    assert cost["wall_s"] > 0 and cost["peak_rss_mb"] > 0 and cost["gpu_hours"] == 0
    assert main(["suite", "show", str(s["suite"]), "--output", str(s["out"])]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "vit-tiny-random" in line]
    assert shown == ["done", "failed", "pending"]

    assert (
        main(
            ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-leaderboard", "--no-progress"]
        )
        == 0
    )
    expected_calls = ["seed0", "seed1", "seed1", "seed2"]  # seed 1 twice: killed, then resumed
    assert sorted(_calls(s)) == [f"vit-tiny-random {c}" for c in expected_calls]
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    assert [cell_status(state, i) for i in ids] == ["done"] * 3
    assert state["cells"][ids[1]]["attempts"] == 2
    records = sorted(p.name for p in s["out"].glob("*.json"))
    assert len(records) == 3
    # a third run finds every record and runs nothing
    assert (
        main(
            ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-leaderboard", "--no-progress"]
        )
        == 0
    )
    assert len(_calls(s)) == 4


def test_a_live_cell_is_running_and_never_started_twice(slow_suite, capsys):
    """A cell whose lock is held (another `suite run` computes it) is shown running and skipped."""
    s = slow_suite
    suite = load_suite(s["suite"], s["out"])
    ids = [c.id for c in suite.cells]
    root = s["out"] / ".suite" / "toy-suite"
    lock = take_lock(root / "cells" / f"{ids[1]}.lock")  # this test process plays the other run
    try:
        entry = {"status": "running", "pid": 999999, "lock": str(root / "cells" / f"{ids[1]}.lock")}
        write_state(root / "state.json", {"cells": {ids[1]: entry}, "steps": {}})
        assert cell_status(read_state(root / "state.json"), ids[1]) == "running"  # dead pid, held lock
        argv = [
            "suite",
            "run",
            str(s["suite"]),
            "--output",
            str(s["out"]),
            "--no-leaderboard",
            "--no-progress",
        ]
        assert main(argv) == 0
        assert "still running elsewhere" in capsys.readouterr().out
        assert sorted(_calls(s)) == ["vit-tiny-random seed0", "vit-tiny-random seed2"]
    finally:
        os.close(lock)
    assert cell_status(read_state(root / "state.json"), ids[1]) == "failed"  # lock released: interrupted
    assert main(argv) == 0
    assert sorted(_calls(s)) == [f"vit-tiny-random seed{i}" for i in range(3)]
    assert len(list(s["out"].glob("*.json"))) == 3


def test_suite_output_is_relative_to_the_current_directory_like_run_output(
    slow_suite, tmp_path, monkeypatch, capsys
):
    s = slow_suite
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert load_suite(s["suite"], Path("rel/out")).output == cwd / "rel" / "out"
    assert main(["suite", "show", str(s["suite"]), "--output", "rel/out"]) == 0
    assert f"output: {cwd / 'rel' / 'out'}" in capsys.readouterr().out
    assert (
        load_suite("demo").output == REPO / "results" / "synthetic" / "demo"
    )  # the suite file's own: the checkout


def test_failed_cell_is_recorded_and_rerun(slow_suite, capsys):
    s = slow_suite
    s["fail_gate"].touch()
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-progress"]
    assert main(argv) == 1
    assert "1 cells failed" in capsys.readouterr().err
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    failed = [e for e in state["cells"].values() if e["status"] == "failed"]
    assert len(failed) == 1 and "told to fail" in failed[0]["error"]
    assert json.loads(Path(failed[0]["record"]).read_text())["status"]["state"] == "failed"
    s["fail_gate"].unlink()
    assert main(argv) == 0
    assert _calls(s).count("vit-tiny-random seed2") == 2 and _calls(s).count("vit-tiny-random seed0") == 1
    # the failed run stays visible next to the rerun in the table: n=3 seeds, 1 failed
    assert "(n=3, 1 failed)" in capsys.readouterr().out


def test_a_record_counts_for_a_cell_only_with_the_cells_identity(slow_suite):
    """Same backbone, task, seed and protocol version is not enough: config, preset and data kind too."""
    s = slow_suite
    slow_record(s, 0, 70.0, config={"value": 1.0})  # other hyper-parameters (a `set:` override)
    slow_record(s, 1, 71.0, synthetic=True)  # synthetic data for a real-data suite
    slow_record(s, 2, 72.0)  # the cell's own result: adopted, not rerun
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-leaderboard", "--no-progress"]
    assert main(argv) == 0
    assert sorted(_calls(s)) == ["vit-tiny-random seed0", "vit-tiny-random seed1"]
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    adopted = [e for e in state["cells"].values() if e.get("adopted")]
    assert len(adopted) == 1 and "__seed2__" in Path(adopted[0]["record"]).name


def test_checkpoint_identity_is_the_sha256_when_the_file_is_here(tmp_path):
    import hashlib

    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes(b"weights v1")
    sha = hashlib.sha256(b"weights v1").hexdigest()
    assert checkpoint_matches({"source": "/elsewhere/ckpt.safetensors", "sha256": sha}, str(ckpt))  # moved
    ckpt.write_bytes(b"weights v2, retrained in place")
    assert not checkpoint_matches({"source": str(ckpt), "sha256": sha}, str(ckpt))  # same path, other weights
    assert checkpoint_matches({"source": "/gone.pth", "sha256": None}, "/gone.pth")  # no file: the path
    assert checkpoint_matches({"source": "card's own", "sha256": sha}, None)  # the cell names none


def test_prerequisite_step_runs_once_and_feeds_the_cells(slow_suite, tmp_path):
    """A step (any `harmony-bench` command) writes a card; the cells load it; a rerun skips the step."""
    s = slow_suite
    card = (
        (REPO / "backbones" / "vit-tiny-random.yaml")
        .read_text()
        .replace("name: vit-tiny-random", "name: tiny-made")
    )
    source = tmp_path / "made-card.yaml"
    source.write_text(card)
    text = s["suite"].read_text().replace("backbones: {vit-tiny-random: }", "")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]").replace(
        "backbone: vit-tiny-random", "backbone: made"
    )
    text += textwrap.dedent(f"""
        steps:
          make-card:
            args: [data, synth, --kind, captions, --out, "{{out}}/captions", --n, "2", --size, "16"]
            produces: {{card: "{source}", captions: captions/harmony_bench_synth.json}}
        backbones:
          made: {{card: "{{steps.make-card.card}}", after: make-card}}
        """)  # fmt: skip
    s["suite"].write_text(text)
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-leaderboard", "--no-progress"]
    assert main(argv) == 0
    assert _calls(s) == ["tiny-made seed0"]
    step_log = s["out"] / ".suite" / "toy-suite" / "logs" / "step-make-card.log"
    assert step_log.read_text().count("$ ") == 1
    record = json.loads(next(s["out"].glob("tiny-made__slow__*.json")).read_text())
    assert record["backbone"]["name"] == "tiny-made"
    assert main(argv) == 0
    assert step_log.read_text().count("$ ") == 1 and len(_calls(s)) == 1


def test_real_data_suite_asks_for_its_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    assert main(["suite", "run", "released", "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--data imagenet=PATH or set $IMAGENET_ROOT" in capsys.readouterr().err


def test_slurm_launcher_submits_one_job_per_missing_cell(slow_suite, monkeypatch, capsys):
    """submitit is optional: a stand-in executor runs each job in-process and records what was submitted."""
    submitted = []
    _fake_submitit(monkeypatch, submitted)
    s = slow_suite
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-progress"]
    assert (
        main([*argv, "--launcher", "slurm", "--slurm", "slurm_partition=gpu", "--slurm", "gpus_per_node=1"])
        == 0
    )
    assert len(submitted) == 3 and submitted[0][0]["slurm_partition"] == "gpu"
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    assert sorted(e["job_id"] for e in state["cells"].values()) == ["1001", "1002", "1003"]
    # the next local run adopts the records the jobs wrote instead of running the cells again
    assert main([*argv, "--no-leaderboard"]) == 0
    assert len(_calls(s)) == 3
    assert "3 cells, 3 done, 0 to run" in capsys.readouterr().out


class FakeCuda:
    """``torch.cuda`` as the cost code sees it: 8 visible devices, memory allocated on some of them."""

    def __init__(self, used: dict[int, int], initialized: bool = True):
        self.used, self.initialized = used, initialized

    def is_available(self):
        return True

    def is_initialized(self):
        return self.initialized

    def device_count(self):
        return 8

    def max_memory_allocated(self, device):
        return self.used.get(device, 0)


def test_gpu_hours_count_the_gpus_the_cell_used_not_the_visible_ones():
    assert gpus_used(FakeCuda({3: 2**30}), environ={}) == 1  # one of eight visible devices used
    assert gpus_used(FakeCuda({0: 1, 1: 1}), environ={}) == 2
    assert gpus_used(FakeCuda({0: 1}), environ={"WORLD_SIZE": "4"}) == 4  # torchrun: one device per rank
    assert gpus_used(FakeCuda({}, initialized=False), environ={}) == 0  # CUDA never touched: a CPU cell
    assert cost_fields({"gpus": 1, "peak_gpu_mem_mb": 900.0}, wall=7200.0, rss=512.0)["gpu_hours"] == 2.0
    assert cost_fields({"gpus": 0}, wall=7200.0, rss=512.0)["gpu_hours"] == 0.0


def _fake_submitit(monkeypatch, submitted: list, run_jobs: bool = True):
    """submitit is optional: a stand-in executor records each submission and runs the job in-process."""
    import types

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id

    class AutoExecutor:
        def __init__(self, folder):
            self.folder, self.params = folder, {}

        def update_parameters(self, **params):
            self.params.update(params)

        def submit(self, fn, *args):
            submitted.append((dict(self.params), fn.__name__, args))
            if run_jobs:
                fn(*args)  # the job's body, as the Slurm node would run it
            return Job(str(1000 + len(submitted)))

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=AutoExecutor))


def _suite_with_a_step(s) -> None:
    """Two seeds of the toy task on a backbone that a prerequisite step (`make-card`) provides."""
    card = REPO / "backbones" / "vit-tiny-random.yaml"
    s["suite"].write_text(
        textwrap.dedent(f"""
        name: toy-suite
        description: two seeds of a toy task on a backbone a prerequisite step provides
        seeds: [0, 1]
        data: {{slow: {{root: "{s['out'].parent}"}}}}
        steps:
          make-card:
            args: [data, synth, --kind, captions, --out, "{{out}}/captions", --n, "2", --size, "16"]
            produces: {{card: "{card}", captions: captions/harmony_bench_synth.json}}
        backbones:
          made: {{card: "{{steps.make-card.card}}", after: make-card}}
        tasks: [{{name: slow, est_s: 1}}]
        """)
    )  # fmt: skip


def test_slurm_steps_are_jobs_the_cells_depend_on_and_cells_get_their_cost(slow_suite, monkeypatch, capsys):
    s = slow_suite
    _suite_with_a_step(s)
    submitted = []
    _fake_submitit(monkeypatch, submitted)
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-progress"]
    assert main([*argv, "--launcher", "slurm", "--slurm", "slurm_partition=gpu"]) == 0
    step_params, step_fn, _ = submitted[0]
    assert step_fn == "_step_job" and "dependency" not in step_params.get("slurm_additional_parameters", {})
    step_job = "1001"
    assert [fn for _, fn, _ in submitted[1:]] == ["_job", "_job"]
    for params, _, _ in submitted[1:]:  # each cell waits for its backbone's step, on Slurm, not here
        assert params["slurm_additional_parameters"] == {"dependency": f"afterok:{step_job}"}
        assert params["slurm_partition"] == "gpu"
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    assert state["steps"]["make-card"]["job_id"] == step_job
    assert {e["status"] for e in state["cells"].values()} == {"running"}  # until the results are read
    capsys.readouterr()
    # `suite show` reads the jobs' result files: status and the worker-side cost
    assert main(["suite", "show", str(s["suite"]), "--output", str(s["out"])]) == 0
    shown = capsys.readouterr().out
    assert shown.count("done ") == 2 and "0 GPU, 0.000 GPU-h" in shown and "(job 1002)" in shown
    # the next run folds them into the state and runs nothing
    assert main([*argv, "--no-leaderboard"]) == 0
    assert "2 cells, 2 done, 0 to run" in capsys.readouterr().out
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    for entry in state["cells"].values():
        assert entry["status"] == "done" and entry["job_id"] in ("1002", "1003")
        assert entry["wall_s"] > 0 and entry["peak_rss_mb"] > 0
        assert (entry["gpus"], entry["gpu_hours"]) == (0, 0.0)
    assert len(_calls(s)) == 2


def test_slurm_job_that_failed_runs_again(slow_suite, monkeypatch):
    s = slow_suite
    submitted = []
    _fake_submitit(monkeypatch, submitted)
    s["fail_gate"].touch()  # seed 2 fails
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-progress"]
    assert main([*argv, "--launcher", "slurm"]) == 0
    assert len(submitted) == 3 and all("slurm_additional_parameters" not in p for p, _, _ in submitted)
    s["fail_gate"].unlink()
    assert main([*argv, "--no-leaderboard"]) == 0  # the failed job's cell runs again, locally
    assert _calls(s).count("vit-tiny-random seed2") == 2 and len(_calls(s)) == 4


def _slurm_tools(tmp_path: Path, monkeypatch, **scripts: str) -> None:
    """Stand-ins for Slurm's command-line tools (``sacct=...``, ``scancel=...``: shell bodies) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in scripts.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_job_killed_without_a_result_runs_again(slow_suite, monkeypatch, tmp_path, capsys):
    """A job Slurm ended (TIMEOUT, OOM, ...) writes no result file: sacct's state marks its cell failed."""
    s = slow_suite
    submitted = []
    _fake_submitit(monkeypatch, submitted, run_jobs=False)  # queued, never run: no result files
    argv = ["suite", "run", str(s["suite"]), "--output", str(s["out"]), "--no-progress"]
    assert main([*argv, "--launcher", "slurm"]) == 0
    assert len(submitted) == 3
    # job 1002 (seed 1) timed out; the other two are still running
    _slurm_tools(tmp_path, monkeypatch, sacct='case "$*" in *1002*) echo TIMEOUT ;; *) echo RUNNING ;; esac')
    capsys.readouterr()
    assert main(["suite", "show", str(s["suite"]), "--output", str(s["out"])]) == 0
    shown = capsys.readouterr().out
    assert "ended TIMEOUT" in shown or shown.count("failed") == 1
    assert main([*argv, "--no-leaderboard"]) == 0  # only the killed job's cell runs again, locally
    assert _calls(s) == ["vit-tiny-random seed1"]
    assert "2 cells still running elsewhere" in capsys.readouterr().out  # the live jobs are left alone


def test_a_cell_is_identified_by_the_preset_its_backbone_family_runs(tmp_path):
    """A Swin cell asking for `smoke` runs and records `smoke-swin`: its identity says so (and its config)."""
    from harmony_bench.suites.plan import cell_identity

    path = tmp_path / "swin.yaml"
    path.write_text(
        textwrap.dedent("""
        name: swin
        description: d
        backbones: {swin-b-p4w7-in1k: , vit-tiny-random: }
        tasks: [{name: imagenet-finetune, preset: smoke}]
        """)
    )
    suite = load_suite(path)
    by_card = {cell.backbone.card: cell_identity(cell, suite, {}) for cell in suite.cells}
    task = get_task("imagenet-finetune")
    swin, vit = by_card["swin-b-p4w7-in1k"], by_card["vit-tiny-random"]
    assert (swin.preset, vit.preset) == ("smoke-swin", "smoke")
    assert swin.config_hash != vit.config_hash
    from harmony_bench.results import config_hash

    assert swin.config_hash == config_hash(task.resolve_config("smoke-swin"))


def test_a_failed_slurm_step_is_submitted_again_with_the_cells_that_waited_on_it(
    slow_suite, monkeypatch, tmp_path, capsys
):
    """A step job FAILED: its cells' afterok can never be met, so they are cancelled and go again after it."""
    s = slow_suite
    _suite_with_a_step(s)
    submitted = []
    _fake_submitit(monkeypatch, submitted, run_jobs=False)
    argv = [
        "suite",
        "run",
        str(s["suite"]),
        "--output",
        str(s["out"]),
        "--no-progress",
        "--launcher",
        "slurm",
    ]
    assert main(argv) == 0
    assert [fn for _, fn, _ in submitted] == ["_step_job", "_job", "_job"]  # jobs 1001 (step), 1002, 1003
    _slurm_tools(
        tmp_path,
        monkeypatch,
        sacct='case "$*" in *1001*) echo FAILED ;; *) echo PENDING ;; esac',
        scancel=f'echo "$@" >> {tmp_path / "cancelled"}',
    )
    assert main(argv) == 0
    assert [fn for _, fn, _ in submitted[3:]] == ["_step_job", "_job", "_job"]  # the step again: job 1004
    for params, _, _ in submitted[4:]:
        assert params["slurm_additional_parameters"] == {"dependency": "afterok:1004"}
    assert (tmp_path / "cancelled").read_text().split() == ["1002", "1003"]
    assert "step make-card: Slurm job 1001 of step make-card ended FAILED" in capsys.readouterr().out
    state = read_state(s["out"] / ".suite" / "toy-suite" / "state.json")
    assert state["steps"]["make-card"]["job_id"] == "1004"
