"""The linear-probe machinery against the rules it restates: heads, lr scaling, schedules, LARS, the
group BatchNorm, the batching of an epoch, the reported number, and the torchrun gradient sum.

Each reference below is the upstream rule written out (tests cannot import the upstream repositories).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.runtime import ProcessGroup
from harmony_bench.tasks.imagenet import linear_data, linear_heads
from harmony_bench.tasks.imagenet.lars import LARS
from harmony_bench.tasks.imagenet.linear import train_step

HEAD = {
    "norm": "none",
    "init": "normal",
    "init_std": 0.01,
    "bn_eps": 1e-5,
    "bn_momentum": 0.1,
    "bn_group": None,
}
TRAIN = {"batch_size": 16, "lr_scaling": "batch/256", "gpus": 8, "optimizer": "sgd", "momentum": 0.9}
TRAIN = {**TRAIN, "weight_decay": 0.0, "lars_trust": 0.001}


def data(n=48, dim=12, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randint(0, classes, (n,), generator=generator)


# --------------------------------------------------------------------------- heads


def test_a_head_in_the_grid_trains_as_it_would_alone_with_plain_sgd():
    """Harmony/DINOv2: sum of the heads' CE losses, one SGD param group per head = each head on its own."""
    x, y = data()
    lrs = [0.5, 0.05]
    grid = linear_heads.HeadGrid({"cls": 12, "cls+avgpool": 12}, 5, len(lrs), HEAD, seed=0)
    reference = [nn.Linear(12, 5) for _ in lrs]
    for ref, cell in zip(reference, grid.cells["cls"], strict=True):
        ref.load_state_dict(cell.state_dict())
    optimizer = linear_heads.build_optimizer(grid, lrs, TRAIN)
    ref_opts = [
        torch.optim.SGD(ref.parameters(), lr=lr * 16 / 256, momentum=0.9, weight_decay=0)
        for ref, lr in zip(reference, lrs, strict=True)
    ]
    for start in range(0, 48, 16):
        xb, yb = x[start : start + 16], y[start : start + 16]
        train_step(grid, optimizer, {"cls": xb, "cls+avgpool": xb * 2}, yb, ProcessGroup())
        for ref, opt in zip(reference, ref_opts, strict=True):
            opt.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()  # nn.CrossEntropyLoss()(v, target), the mean
            opt.step()
    for ref, cell in zip(reference, grid.cells["cls"], strict=True):
        assert torch.allclose(ref.weight, cell.weight, atol=1e-6)
        assert torch.allclose(ref.bias, cell.bias, atol=1e-6)
    assert not torch.allclose(grid.cells["cls"][0].weight, grid.cells["cls"][1].weight)


def test_head_init_is_normal_or_trunc_normal_with_zero_bias():
    grid = linear_heads.HeadGrid({"cls": 400}, 300, 1, HEAD, seed=0)
    weight = grid.cells["cls"][0].weight.detach()
    assert abs(float(weight.std()) - 0.01) < 5e-4
    assert float(grid.cells["cls"][0].bias.detach().abs().max()) == 0.0
    # MAE: trunc_normal_(std=0.01) with timm/torch's absolute bounds +-2: the bounds never bind
    mae = linear_heads.HeadGrid({"cls": 400}, 300, 1, {**HEAD, "init": "trunc_normal"}, seed=0)
    assert abs(float(mae.cells["cls"][0].weight.detach().std()) - 0.01) < 5e-4
    with pytest.raises(ValueError, match="head.norm"):
        linear_heads.HeadGrid({"cls": 4}, 3, 1, {**HEAD, "norm": "layernorm"}, seed=0)


def test_group_batchnorm_normalises_each_per_gpu_group_and_tracks_the_first():
    """MAE: BatchNorm1d(affine=False, eps=1e-6) per GPU under DDP (no SyncBN); buffers follow rank 0."""
    head = {**HEAD, "norm": "batchnorm", "bn_eps": 1e-6, "bn_group": 4}
    grid = linear_heads.HeadGrid({"cls": 3}, 2, 1, head, seed=0).train()
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(1)) * 5 + 2
    out = grid.normalize("cls", x)
    for start in range(0, 12, 4):
        chunk = x[start : start + 4]
        expected = (chunk - chunk.mean(0)) / torch.sqrt(chunk.var(0, unbiased=False) + 1e-6)
        assert torch.allclose(out[start : start + 4], expected, atol=1e-5)
    bn = grid.norms["cls"]
    first = x[:4]
    assert torch.allclose(bn.running_mean, 0.1 * first.mean(0), atol=1e-6)  # momentum 0.1 from 0
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * first.var(0, unbiased=True), atol=1e-5)
    grid.eval()
    assert torch.allclose(grid.normalize("cls", x), (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-6))


# --------------------------------------------------------------------------- lr


def test_lr_scaling_rules():
    # Harmony eval_linear.py:L325-L326 with README 8 GPUs x 1024: lr * 1024 * 8 / 256
    assert linear_heads.scaled_lr(1e-3, {**TRAIN, "batch_size": 8192}) == pytest.approx(1e-3 * 32)
    # SLIP main_linear.py:L134: args.lr * int(args.batch_size / world_size) / 256, batch 128 per GPU, 8 GPUs
    slip = {**TRAIN, "batch_size": 1024, "gpus": 8, "lr_scaling": "slip"}
    assert (
        linear_heads.scaled_lr(0.1, slip) == pytest.approx(0.1 * int(128 / 8) / 256) == pytest.approx(0.00625)
    )
    # MAE main_linprobe.py:L237-L240: blr * 512 * 1 * 32 / 256
    assert linear_heads.scaled_lr(0.1, {**TRAIN, "batch_size": 16384}) == pytest.approx(6.4)
    assert linear_heads.scaled_lr(0.1, {**TRAIN, "lr_scaling": "none"}) == 0.1


def test_cosine_per_epoch_equals_torch_cosine_annealing():
    """Harmony/iBOT: CosineAnnealingLR(optimizer, epochs, eta_min=0), scheduler.step() after each epoch."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.8)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 7, eta_min=0)
    schedule = {"step": "epoch", "warmup_epochs": 0, "min_lr": 0.0}
    for epoch in range(7):
        assert linear_heads.lr_at(0.8, epoch, 7, schedule) == pytest.approx(optimizer.param_groups[0]["lr"])
        # SLIP main_linear.py:L434-L438, set at each epoch start
        assert linear_heads.lr_at(0.8, epoch, 7, schedule) == pytest.approx(
            0.8 * 0.5 * (1 + math.cos(math.pi * epoch / 7))
        )
        optimizer.step()
        scheduler.step()


def test_cosine_per_iteration_equals_dinov2_and_mae_warmup():
    # DINOv2 linear.py:L518-L519,L364: CosineAnnealingLR(max_iter = epochs * epoch_length), per iteration
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 3 * 5, eta_min=0)
    schedule = {"step": "iteration", "warmup_epochs": 0, "min_lr": 0.0}
    for it in range(15):
        assert linear_heads.lr_at(0.3, it / 5, 3, schedule) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    # MAE util/lr_sched.py:L9-L15 at epoch = data_iter_step / len(data_loader) + epoch
    def mae(lr, epoch, warmup, epochs, min_lr):
        if epoch < warmup:
            return lr * epoch / warmup
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))

    schedule = {"step": "iteration", "warmup_epochs": 10, "min_lr": 0.0}
    for progress in (0.0, 0.5, 9.99, 10.0, 33.3, 89.9):
        assert linear_heads.lr_at(6.4, progress, 90, schedule) == pytest.approx(
            mae(6.4, progress, 10, 90, 0.0)
        )


# --------------------------------------------------------------------------- LARS


def test_lars_follows_mae_util_lars_rule():
    """MAE util/lars.py (MoCo v3): adapt and decay ndim > 1 only; mu = m * mu + d; p -= lr * mu."""
    torch.manual_seed(0)
    weight, bias = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))
    ref_w, ref_b = weight.detach().clone(), bias.detach().clone()
    mu_w, mu_b = torch.zeros_like(ref_w), torch.zeros_like(ref_b)
    lr, wd, momentum, trust = 0.5, 0.01, 0.9, 0.001
    optimizer = LARS([weight, bias], lr=lr, weight_decay=wd, momentum=momentum, trust_coefficient=trust)
    for _ in range(3):
        g_w, g_b = torch.randn(4, 3), torch.randn(4)
        weight.grad, bias.grad = g_w.clone(), g_b.clone()
        optimizer.step()
        d = g_w + wd * ref_w
        d = d * (trust * ref_w.norm() / d.norm())
        mu_w = momentum * mu_w + d
        ref_w = ref_w - lr * mu_w
        mu_b = momentum * mu_b + g_b  # a bias: no decay, no trust ratio
        ref_b = ref_b - lr * mu_b
        assert torch.allclose(weight.detach(), ref_w, atol=1e-6)
        assert torch.allclose(bias.detach(), ref_b, atol=1e-6)
    zero = nn.Parameter(torch.zeros(2, 2))  # |p| = 0: the trust ratio is 1
    opt = LARS([zero], lr=1.0, momentum=0.0)
    zero.grad = torch.ones(2, 2)
    opt.step()
    assert torch.equal(zero.detach(), -torch.ones(2, 2))


# --------------------------------------------------------------------------- batching


def test_an_epoch_sees_every_image_once_and_steps_are_shared_by_ranks():
    steps = linear_data.epoch_steps(50, 16, epoch=3, seed=0)
    assert [len(s) for s in steps] == [16, 16, 16, 2]
    assert sorted(torch.cat(steps).tolist()) == list(range(50))
    assert [len(s) for s in linear_data.epoch_steps(50, 16, 3, 0, drop_last=True)] == [16, 16, 16]
    assert torch.equal(torch.cat(steps), torch.cat(linear_data.epoch_steps(50, 16, 3, 0)))  # deterministic
    assert not torch.equal(torch.cat(steps), torch.cat(linear_data.epoch_steps(50, 16, 4, 0)))
    assert (
        linear_data.steps_in_epoch(50, 16, None, False) == 4
        and linear_data.steps_in_epoch(50, 16, None, True) == 3
    )
    # two ranks, micro-batches of 5: each step's rows are split between them, nothing lost or repeated
    shares = [linear_data.StepMicroBatches(steps, rank, 2, 5) for rank in (0, 1)]
    assert shares[0].counts == [2, 2, 2, 1]
    rows = sorted(i for share in shares for batch in share for i in batch)
    assert rows == list(range(50))


def test_iteration_epochs_cut_one_endless_stream():
    """DINOv2: epoch_length iterations per epoch from an infinite sampler (passes run across epochs)."""
    first = linear_data.epoch_steps(10, 4, 0, 0, steps_per_epoch=3)
    second = linear_data.epoch_steps(10, 4, 1, 0, steps_per_epoch=3)
    stream = torch.cat([*first, *second])
    assert all(len(s) == 4 for s in [*first, *second]) and len(stream) == 24
    assert sorted(stream[:10].tolist()) == list(range(10))  # the first pass is a permutation
    assert sorted(stream[10:20].tolist()) == list(range(10))  # and so is the next one


def test_mae_crop_is_one_draw_clamped_to_the_image():
    """MAE util/crop.py: area ~ U(scale) * A, log-ratio ~ U(log ratio), sides rounded and clamped."""
    from PIL import Image

    image = Image.new("RGB", (40, 30))
    for seed in range(20):
        torch.manual_seed(seed)
        got = linear_data.SingleDrawRandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        torch.manual_seed(seed)
        target_area = 1200 * torch.empty(1).uniform_(0.08, 1.0).item()
        log_ratio = torch.log(torch.tensor([3 / 4, 4 / 3]))
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = min(int(round(math.sqrt(target_area * aspect))), 40)
        h = min(int(round(math.sqrt(target_area / aspect))), 30)
        i = torch.randint(0, 30 - h + 1, size=(1,)).item()
        j = torch.randint(0, 40 - w + 1, size=(1,)).item()
        assert got == (i, j, h, w)


# --------------------------------------------------------------------------- report


def history_row(epoch, best_top1, other=0):
    return {"epoch": epoch, "hits": {"cls": [[other, other + 1], [best_top1, best_top1 + 2]]}}


def test_report_max_over_epochs_or_the_final_epoch():
    history = [history_row(1, 30), history_row(2, 55), history_row(3, 40)]
    metrics, artifacts = linear_heads.report_metrics(history, [0.1, 1.0], 100, "max")
    assert metrics["top1"]["value"] == 55.0 and metrics["top5"]["value"] == 57.0
    assert metrics["best_epoch"]["value"] == 2 and metrics["final_top1"]["value"] == 40.0
    assert artifacts["best_head"] == "cls lr_1 at epoch 2"
    assert metrics["grid"]["cls"]["lr_1"]["top1"]["value"] == 40.0  # the final epoch's grid
    assert set(metrics["history"]) == {"epoch_001", "epoch_002", "epoch_003"}
    final, _ = linear_heads.report_metrics(history, [0.1, 1.0], 100, "final")
    assert final["top1"]["value"] == 40.0 and final["best_epoch"]["value"] == 3


# --------------------------------------------------------------------------- torchrun

DDP_STEP = """
import os, sys, torch
import torch.distributed as dist
from harmony_bench.tasks.imagenet import linear_heads
from harmony_bench.runtime import default_device_type, init_process_group
from harmony_bench.tasks.imagenet.linear import train_step

proc = init_process_group(default_device_type())
head = {"norm": "batchnorm", "init": "normal", "init_std": 0.01, "bn_eps": 1e-6, "bn_momentum": 0.1,
        "bn_group": None}
train = {"batch_size": 24, "lr_scaling": "batch/256", "gpus": 8, "optimizer": "sgd", "momentum": 0.9,
         "weight_decay": 0.0, "lars_trust": 0.001}
grid = linear_heads.HeadGrid({"cls": 6}, 3, 2, head, seed=0)
optimizer = linear_heads.build_optimizer(grid, [0.5, 2.0], train)
g = torch.Generator().manual_seed(0)
for _ in range(3):
    x, y = torch.randn(24, 6, generator=g), torch.randint(0, 3, (24,), generator=g)
    x, y = x[:11], y[:11]  # an uneven global batch: 6 rows on rank 0, 5 on rank 1
    rows = torch.arange(11)[proc.rank :: proc.world]  # each rank's BatchNorm sees its own rows only
    train_step(grid, optimizer, {"cls": x[rows]}, y[rows], proc)
if proc.rank == 0:
    torch.save(grid.state_dict(), sys.argv[1])
if proc.owns_group:
    dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_gradient_sum_equals_the_one_process_update(tmp_path):
    """2 gloo ranks, each with its share of an uneven batch: the same linear weights as one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    driver = tmp_path / "driver.py"
    driver.write_text(DDP_STEP)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([*launcher, str(driver), str(tmp_path / "ddp.pt")], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)

    head = {**HEAD, "norm": "batchnorm", "bn_eps": 1e-6, "bn_group": None}
    train = {**TRAIN, "batch_size": 24}
    grid = linear_heads.HeadGrid({"cls": 6}, 3, 2, head, seed=0)
    optimizer = linear_heads.build_optimizer(grid, [0.5, 2.0], train)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(24, 6, generator=g), torch.randint(0, 3, (24,), generator=g)
        x, y = x[:11], y[:11]
        order = torch.cat([torch.arange(11)[0::2], torch.arange(11)[1::2]])  # rank 0's rows, then rank 1's
        xs, ys = x[order], y[order]
        # each rank normalises its own rows; the running statistics are rank 0's (broadcast)
        feats = torch.cat([grid.normalize("cls", xs[:6]), _batch_stats(xs[6:])])
        loss = sum(F.cross_entropy(cell(feats), ys, reduction="sum") for cell in grid.cells["cls"])
        optimizer.zero_grad()
        (loss / 11).backward()  # the mean over the global batch, summed over heads
        optimizer.step()
    for key in ("cells.cls.0.weight", "cells.cls.1.weight", "cells.cls.1.bias"):
        assert torch.allclose(ddp[key], grid.state_dict()[key], atol=1e-5), key
    assert torch.allclose(
        ddp["norms.cls.running_mean"], grid.state_dict()["norms.cls.running_mean"], atol=1e-6
    )


def _batch_stats(x):
    return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-6)
