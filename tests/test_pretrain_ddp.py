"""Two CPU processes (gloo): the global-batch CLIP loss equals a one-process run over the same global batch.

Two checks in one spawn (starting processes is the slow part):

1. the CLIP objective under DDP: each rank holds half of a fixed global batch; the rank-averaged loss and
   the DDP-averaged gradients equal the one-process loss and gradients on the whole batch;
2. the trainer (``harmony-bench pretrain --method clip``) with 2 x batch b logs the same losses step by step,
   and exports the same weights, as one process with batch 2b on the same data.
"""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from harmony_bench.pretrain.logger import read_log
from harmony_bench.pretrain.trainer import RunOptions, train

from ._pretrain_util import fixed_batch, sched, tiny_cfg, tiny_model, without_key_bias

WORLD, LOCAL_BATCH, STEPS = 2, 6, 3


def local_part(batch: dict, rank: int, size: int) -> dict:
    rows = slice(rank * size, (rank + 1) * size)
    return {k: [c[rows] for c in v] if isinstance(v, list) else v[rows] for k, v in batch.items()}


def run_options(data: str, out, batch: int) -> RunOptions:
    return RunOptions(
        method="clip",
        preset="smoke",
        data=data,
        output=out,
        batch_size=batch,
        max_steps=STEPS,
        sets=["log.every_steps=1", "model.drop_path_rate=0.0"],
        device="cpu",
    )


def worker(rank: int, port: int, out: str, data: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    cfg = tiny_cfg("clip")
    model = tiny_model(cfg, perturb_teacher=False)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    batch = local_part(fixed_batch(cfg, batch=WORLD * LOCAL_BATCH, seed=21), rank, LOCAL_BATCH)
    loss, _ = ddp(batch, sched())
    loss.backward()
    mean = loss.detach().clone()
    torch.distributed.all_reduce(mean)
    if rank == 0:
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": mean / WORLD, "local": loss.detach(), "grads": grads}, f"{out}/objective.pt")
    train(run_options(data, Path(out) / "ddp", LOCAL_BATCH))
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path, monkeypatch):
    from harmony_bench.data.synth import captions

    captions.write(tmp_path / "c", n=2 * WORLD * LOCAL_BATCH, size=40)
    data = f"cc3m:{tmp_path / 'c' / 'pairs'}"
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    mp.spawn(worker, args=(free_port(), str(tmp_path), data), nprocs=WORLD, join=True)

    # 1. objective level
    got = torch.load(tmp_path / "objective.pt", weights_only=True)
    cfg = tiny_cfg("clip")
    model = tiny_model(cfg, perturb_teacher=False)
    loss, _ = model(fixed_batch(cfg, batch=WORLD * LOCAL_BATCH, seed=21), sched())
    loss.backward()
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-6), (float(got["loss"]), float(loss))
    assert abs(float(got["local"]) - float(loss.detach())) > 1e-4  # rank 0's own half is not the global loss
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got["grads"].keys() == grads.keys()
    for n in grads:
        assert torch.allclose(got["grads"][n], grads[n], atol=1e-6, rtol=1e-4), n

    # 2. the trainer: 2 x 6 images per step vs 1 x 12, same samples (seeded per sample), same lr
    single = tmp_path / "single"
    train(run_options(data, single, WORLD * LOCAL_BATCH))
    a, b = read_log(tmp_path / "ddp" / "log.jsonl"), read_log(single / "log.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    for ra, rb in zip(a, b, strict=True):
        assert ra["lr"] == rb["lr"]
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5), (ra, rb)
    from harmony_bench.pretrain import checkpoint as ckpt

    sa = ckpt.read_state(tmp_path / "ddp" / ckpt.LATEST)["model"]
    sb = ckpt.read_state(single / ckpt.LATEST)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(without_key_bias(k, sa[k]), without_key_bias(k, sb[k]), atol=1e-5, rtol=1e-4), k
