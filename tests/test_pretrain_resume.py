"""Resume: N steps straight == N/2 steps, stop, resume: the same loss curve and weights, bit for bit (CPU)."""

import shutil

import pytest
import torch

from harmony_bench.pretrain import checkpoint as ckpt
from harmony_bench.pretrain.logger import read_log
from harmony_bench.pretrain.trainer import RunOptions, train

TIMING = {"img_per_s", "memory_mb"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from harmony_bench.data.synth import captions

    root = tmp_path_factory.mktemp("captions") / "c"
    captions.write(root, n=32, size=40)
    return f"cc3m:{root / 'pairs'}"


def run(data: str, out, max_steps: int, method: str = "harmony", batch_size: int = 8, **kw) -> dict:
    # 32 images / batch 8 = 4 steps per epoch; stop at 3 (mid-epoch) and resume across the epoch boundary.
    # Drop path is on so the resumed run must also restore the global RNG exactly.
    sets = ["epochs=3", "log.every_steps=1", "checkpoint.every_steps=1000", "model.drop_path_rate=0.1"]
    opts = RunOptions(
        method=method,
        preset="smoke",
        data=data,
        output=out,
        batch_size=batch_size,
        max_steps=max_steps,
        sets=sets,
        device="cpu",
        **kw,
    )
    return train(opts)


def curve(out) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_log(out / "log.jsonl")]


def test_resume_reproduces_the_straight_run_bit_for_bit(data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(data, straight, 6)
    first = run(data, resumed, 3)
    assert first["steps"] == 3
    state = ckpt.read_state(resumed / ckpt.LATEST)
    assert state["step"] == 3
    second = run(data, resumed, 6)
    assert second["steps"] == 6

    a, b = curve(straight), curve(resumed)
    assert [r["step"] for r in b] == list(range(1, 7))
    assert a == b  # every loss term, lr, momentum, grad norm: exactly equal floats
    assert a[0]["loss"] != a[-1]["loss"]

    sa, sb = ckpt.read_state(straight / ckpt.LATEST), ckpt.read_state(resumed / ckpt.LATEST)
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_no_resume_starts_over_and_bad_checkpoint_is_rejected(data, tmp_path):
    out = tmp_path / "r"
    run(data, out, 2, "mae")
    summary = run(data, out, 3, "mae", resume=False)  # --no-resume: three fresh steps, not one more
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 3]  # the old run's lines are gone
    assert summary["steps"] == 3
    with pytest.raises(ValueError, match="steps per epoch"):  # another batch size cannot continue it
        run(data, out, 4, "mae", batch_size=16)
    torch.save({"format": "something-else"}, out / ckpt.LATEST)
    with pytest.raises(ValueError, match="not a harmony-bench pretraining checkpoint"):
        run(data, out, 4, "mae")


def run_with(data: str, out, max_steps: int, extra: list[str], **kw) -> dict:
    """``run`` with more ``--set`` items (e.g. keep a checkpoint every epoch)."""
    sets = [
        "epochs=3",
        "log.every_steps=1",
        "checkpoint.every_steps=1000",
        "model.drop_path_rate=0.1",
        *extra,
    ]
    opts = RunOptions(
        method="mae", preset="smoke", data=data, output=out, batch_size=8, max_steps=max_steps, sets=sets,
        device="cpu", **kw,
    )  # fmt: skip
    return train(opts)


def test_resume_removes_dead_temporaries_and_cuts_the_log_to_the_resumed_step(data, tmp_path):
    """What a kill -9 at step 5 leaves: log lines past the checkpoint (one torn), half-written files."""
    import subprocess
    import sys

    out = tmp_path / "r"
    run_with(data, out, 3, [])  # checkpoint.pt at step 3
    with open(out / "log.jsonl", "a") as log:
        log.write('{"step": 4, "loss": 1.0}\n{"step": 5, "loss": 1.0}\n{"step": 6, "lo')
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [out / ".checkpoint.pt.k2j3x9_q.partial", out / f".checkpoint.pt.{dead.pid}.0123abcd.tmp"]
        busy = out / f".checkpoint.pt.{live.pid}.0123abcd.tmp"  # another process still writing: left alone
        for path in [*stale, busy]:
            path.write_bytes(b"\0" * 4096)
        run_with(data, out, 6, [])
        assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 3, 4, 5, 6]
        assert not any(p.exists() for p in stale) and busy.exists()
    finally:
        live.kill()
        live.wait()


def test_a_corrupt_checkpoint_falls_back_to_the_kept_one_and_continues_exactly(data, tmp_path, caplog):
    keep = ["checkpoint.keep_epochs_every=1"]  # 4 steps per epoch: checkpoint-epoch0001.pt at step 4
    straight, out = tmp_path / "straight", tmp_path / "r"
    run_with(data, straight, 6, keep)
    shutil.copytree(straight, out)  # a run that got to step 6 ...
    latest = out / ckpt.LATEST
    latest.write_bytes(latest.read_bytes()[:1000])  # ... whose latest checkpoint was cut short (disk full)
    with caplog.at_level("WARNING"):
        summary = run_with(data, out, 6, keep)
    assert "checkpoint.pt is corrupt or truncated" in caplog.text
    assert (
        "resuming from the previous kept checkpoint" in caplog.text
        and "checkpoint-epoch0001.pt (step 4)" in caplog.text
    )
    assert summary["steps"] == 6
    assert curve(out) == curve(straight)  # steps 5 and 6 computed again from epoch 1, exactly


def test_a_corrupt_checkpoint_without_a_kept_one_names_no_resume(data, tmp_path):
    out = tmp_path / "r"
    run_with(data, out, 2, [])
    (out / ckpt.LATEST).write_bytes((out / ckpt.LATEST).read_bytes()[:500])
    with pytest.raises(ckpt.CorruptCheckpointError, match="corrupt or truncated.*Pass --no-resume"):
        run_with(data, out, 4, [])
    assert run_with(data, out, 2, [], resume=False)["steps"] == 2  # --no-resume starts over


def test_a_restart_from_step_0_says_so(data, tmp_path, caplog):
    """Killed before its first checkpoint (every 1000 steps by default): the rerun starts over, saying so."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "log.jsonl").write_text("".join(f'{{"step": {s}, "loss": 2.0}}\n' for s in (1, 2, 3)))
    with caplog.at_level("WARNING"):
        run_with(data, out, 2, [])
    assert "no checkpoint in" in caplog.text and "starting from step 0" in caplog.text
    assert "logged up to step 3" in caplog.text and "every 1000 steps" in caplog.text
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_matches_the_straight_run(data, tmp_path):
    """A real kill -9 of `pretrain` between checkpoints, then a resume: the same curve, each step once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO_ROOT

    def argv(out):
        sets = ["epochs=6", "log.every_steps=1", "checkpoint.every_steps=3", "model.drop_path_rate=0.1"]
        cmd = [sys.executable, "-m", "harmony_bench", "pretrain", "--method", "mae", "--preset", "smoke"]
        cmd += ["--data", data, "--output", str(out), "--batch-size", "8", "--device", "cpu"]
        return cmd + [x for s in sets for x in ("--set", s)]

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HARMONY_BENCH_THREADS": "1"}
    straight, out = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(argv(straight), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(argv(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(r["step"] >= 10 for r in read_log(out / "log.jsonl")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps = [r["step"] for r in read_log(out / "log.jsonl")]
    assert 10 <= max(steps) < 24, steps  # killed mid-run
    subprocess.run(argv(out), env=env, check=True, capture_output=True)
    assert [r["step"] for r in read_log(out / "log.jsonl")] == list(range(1, 25))
    assert curve(out) == curve(straight)
    assert not list(out.glob(".checkpoint*"))
