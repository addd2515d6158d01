"""The pretraining loop: DDP, bf16 autocast on CUDA, one backward, EMA, schedules, checkpoints, logging.

``train(options)`` is what ``harmony-bench pretrain`` calls; ``train_step`` is
one optimisation step, shared with the speed benchmark and the tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import checkpoint as ckpt
from harmony_bench.pretrain import distributed, optim
from harmony_bench.pretrain.config import load_config, uses_text
from harmony_bench.pretrain.logger import RunLogger, memory_mb, read_log
from harmony_bench.pretrain.model import PretrainModel
from harmony_bench.runtime import ProcessGroup, autocast, init_process_group, select_device
from harmony_bench.threads import configure_threads

# Pretraining computes in bf16 autocast on CUDA (no loss scaler needed) and fp32 on CPU
# (harmony_bench.runtime.effective_amp with training=True).
AMP = "bf16"

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """What the command line passes to :func:`train`."""

    method: str
    output: Path
    data: str | None = None
    preset: str | None = None
    arch: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    sets: list[str] = field(default_factory=list)
    resume: bool = True
    init: str | None = None
    init_text: str | None = None
    trust_checkpoint: bool = False
    device: str | None = None
    max_steps: int | None = None  # stop early (tests); the schedules still span the full run


def build_config(opts: RunOptions) -> dict[str, Any]:
    """The run's config: files, then the explicit command-line options."""
    sets = list(opts.sets)
    if opts.arch:
        sets.append(f"model.arch={opts.arch}")
    if opts.epochs is not None:
        sets.append(f"epochs={opts.epochs}")
    if opts.batch_size is not None:
        sets.append(f"batch_size={opts.batch_size}")
    return load_config(opts.method, opts.preset, sets)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move a collated batch (tensors and lists of tensors) to ``device``."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, list):
            out[key] = [v.to(device, non_blocking=True) for v in value]
        elif isinstance(value, torch.Tensor):
            out[key] = value.to(device, non_blocking=True)
        else:
            out[key] = value
    return out


def train_step(
    wrapped: nn.Module,
    core: PretrainModel,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    sched: dict[str, float],
    cfg: dict[str, Any],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Forward all objectives, ONE backward over their weighted sum, clip, step, EMA update."""
    optim.apply_schedule(optimizer, sched)
    with autocast(device, AMP, training=True):
        total, terms = wrapped(batch, sched)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"non-finite loss {float(total)} ({ {k: float(v) for k, v in terms.items()} })"
        )
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    core.after_backward(int(sched["epoch"]))
    o = cfg["optim"]
    terms["grad_norm"] = optim.clip_gradients(
        core.clipped_parameters(o["clip_scope"]), float(o["clip_grad"]), o["clip_mode"]
    )
    optimizer.step()
    core.after_step()
    core.ema_update(sched["momentum"])
    return terms


def smoke_data(output: Path, cfg: dict[str, Any]) -> str:
    """Write (once) the synthetic captions the smoke preset trains on; return the ``--data`` spec."""
    from harmony_bench.data.synth import captions

    root = output / "synth-captions"
    if not root.is_dir():
        captions.write(
            root, n=int(cfg["data"].get("synth_n", 256)), size=int(cfg["data"].get("synth_size", 48))
        )
    return f"cc3m:{root / 'pairs'}"


def make_loader(
    cfg: dict[str, Any],
    samples: list[Any],
    model: PretrainModel,
    info: ProcessGroup,
    device: torch.device,
) -> tuple[Any, Any]:
    """(DataLoader, EpochSampler) for this rank over ``samples`` (from ``sources.open_source``)."""
    from harmony_bench.models.build import build_tokenizer
    from harmony_bench.pretrain.data.dataset import EpochSampler, PretrainDataset, collate
    from harmony_bench.pretrain.towers import patch_size

    tokenizer = build_tokenizer(cfg["model"]["text"]) if uses_text(cfg) else None
    dataset = PretrainDataset(samples, cfg, patch_size(model.student.vit), tokenizer)
    batch = int(cfg["batch_size"])
    sampler = EpochSampler(len(dataset), info.rank, info.world, int(cfg["seed"]), batch)
    workers = int(cfg["data"]["num_workers"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        # Its own generator: otherwise every new iterator (each epoch, and once after a resume) draws its
        # base seed from the global RNG, which drop path also uses, and a resumed run would diverge.
        generator=torch.Generator().manual_seed(int(cfg["seed"])),
    )
    return loader, sampler


def train(opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) one pretraining job; returns a summary (steps, final losses, export paths)."""
    device = select_device(opts.device)
    info = init_process_group(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = build_config(opts)
    configure_threads(int(cfg["data"]["num_workers"]))  # the cores this process may use, shared with workers
    torch.manual_seed(int(cfg["seed"]) + info.rank)  # drop path: reproducible runs (a resume restores it)
    output = opts.output.expanduser()
    output.mkdir(parents=True, exist_ok=True)
    data = opts.data or (smoke_data(output, cfg) if info.main and opts.preset == "smoke" else None)
    if opts.data is None and opts.preset == "smoke" and info.world > 1:
        torch.distributed.barrier()
        data = smoke_data(output, cfg)
    if data is None:
        raise ValueError(
            "--data is required (e.g. cc3m:/data/cc3m, wds:/data/shards, tsv:/data/captions.tsv)"
        )
    from harmony_bench.pretrain.data.sources import open_source

    samples = open_source(data)  # a bad --data fails here, before a large model is built
    model = PretrainModel(cfg).to(device)
    loader, sampler = make_loader(cfg, samples, model, info, device)
    steps_per_epoch = sampler.per_rank // int(cfg["batch_size"])
    optimizer = optim.build_optimizer(model, cfg, device)
    step = _start(opts, cfg, model, optimizer, output, steps_per_epoch)
    wrapped: nn.Module = model
    if info.world > 1:
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SLIP's image MLP; same Parameter objects
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    summary = _loop(
        cfg, opts, wrapped, model, optimizer, loader, sampler, step, steps_per_epoch, info, device, output
    )
    if info.world > 1:
        torch.distributed.barrier()
    return summary


def _start(
    opts: RunOptions,
    cfg: dict[str, Any],
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    output: Path,
    steps_per_epoch: int,
) -> int:
    ckpt.remove_stale_temporaries(output)
    found = ckpt.find_resumable(output) if opts.resume else None
    if found is not None:
        path, state = found
        step = ckpt.restore(state, model, optimizer, steps_per_epoch)
        log.info("resumed from %s at step %d", path, step)
        return step
    logged = read_log(output / "log.jsonl")
    if opts.resume and logged:  # a run was here, but killed before its first checkpoint
        log.warning(
            "no checkpoint in %s: starting from step 0, although an earlier run logged up to step %d (it was "
            "stopped before its first checkpoint; they are written every %d steps and at each epoch end, "
            "--set checkpoint.every_steps=N writes them more often)",
            output,
            max(int(r.get("step", 0)) for r in logged),
            int(cfg["checkpoint"]["every_steps"]),
        )
    if opts.init:
        from harmony_bench.pretrain.harmony_repo import load_harmony_repo

        load_harmony_repo(model, opts.init, opts.init_text, trust=opts.trust_checkpoint)
    return 0


def _loop(
    cfg: dict[str, Any],
    opts: RunOptions,
    wrapped: nn.Module,
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    loader: Any,
    sampler: Any,
    step: int,
    steps_per_epoch: int,
    info: ProcessGroup,
    device: torch.device,
    output: Path,
) -> dict[str, Any]:
    from tqdm import tqdm

    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    total = epochs * steps_per_epoch
    stop = min(total, opts.max_steps) if opts.max_steps else total
    global_batch = batch * info.world
    logger = RunLogger(output, cfg, info.main, start_step=step)  # a fresh start (step 0) clears the old log
    bar = tqdm(
        total=stop, initial=step, disable=not info.main, desc=f"pretrain {cfg['method']}", dynamic_ncols=True
    )
    every, save_every = int(cfg["log"]["every_steps"]), int(cfg["checkpoint"]["every_steps"])
    skipped, last, tic, done = 0, {}, time.perf_counter(), 0
    model.train()
    while step < stop:
        epoch, offset = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch, offset * batch)
        for raw in loader:
            sched = optim.step_schedule(cfg, step, steps_per_epoch, global_batch)
            skipped += int(raw.pop("skipped"))
            terms = train_step(wrapped, model, optimizer, to_device(raw, device), sched, cfg, device)
            step, done = step + 1, done + 1
            bar.update(1)
            if step % every == 0 or step == stop:
                terms = distributed.mean_terms(terms, device)
                rate = done * global_batch / (time.perf_counter() - tic)
                last = {k: float(v) for k, v in terms.items()}
                last.update(lr=sched["lr"], weight_decay=sched["weight_decay"], momentum=sched["momentum"])
                last.update(img_per_s=rate, memory_mb=memory_mb(device), skipped_images=skipped, epoch=epoch)
                logger.scalars(step, last)
                bar.set_postfix(loss=f"{last['loss']:.3f}", img_s=f"{rate:.0f}")
                tic, done = time.perf_counter(), 0
            end_of_epoch = step % steps_per_epoch == 0
            if step % save_every == 0 or end_of_epoch or step == stop:
                _save(model, optimizer, cfg, step, steps_per_epoch, info, output, end_of_epoch)
            if step >= stop:
                break
    bar.close()
    logger.close()
    weights, card = output / "export", None
    if info.main:
        from harmony_bench.pretrain.export import export

        weights, card = export(model, cfg, output, step)
    return {
        "steps": step,
        "last": last,
        "export": str(weights),
        "card": str(card),
        "skipped_images": skipped,
        "deviations": list(cfg.get("deviations") or []),
    }


def _save(
    model: PretrainModel,
    optimizer: Any,
    cfg: dict[str, Any],
    step: int,
    steps_per_epoch: int,
    info: Any,
    output: Path,
    epoch_end: bool,
) -> None:
    if info.main:
        state = ckpt.training_state(model, optimizer, cfg, step, steps_per_epoch)
        ckpt.atomic_save(state, output / ckpt.LATEST)
        keep = int(cfg["checkpoint"]["keep_epochs_every"])
        epoch = step // steps_per_epoch
        if epoch_end and keep and epoch % keep == 0:
            ckpt.atomic_save(state, output / f"checkpoint-epoch{epoch:04d}.pt")
        if epoch_end:
            from harmony_bench.pretrain.export import export

            export(model, cfg, output, step)
    if info.world > 1:
        torch.distributed.barrier()
