"""Resume: N steps straight == N/2 steps, stop, resume: the same loss curve and weights, bit for bit (CPU)."""

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
    assert [r["step"] for r in read_log(out / "log.jsonl")] == [1, 2, 1, 2, 3]
    assert summary["steps"] == 3
    with pytest.raises(ValueError, match="steps per epoch"):  # another batch size cannot continue it
        run(data, out, 4, "mae", batch_size=16)
    torch.save({"format": "something-else"}, out / ckpt.LATEST)
    with pytest.raises(ValueError, match="not a harmony-bench pretraining checkpoint"):
        run(data, out, 4, "mae")
