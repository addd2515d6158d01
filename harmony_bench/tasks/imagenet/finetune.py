"""``imagenet-finetune``: full fine-tuning with the BEiT/iBOT/Harmony recipe, resumable epoch by epoch.

The recipe (every number in ``benchmarks/imagenet/imagenet-finetune.yaml`` with its source): AdamW
with layer-wise lr decay, drop path, RandAugment ``rand-m9-mstd0.5-inc1``, random erasing, mixup
0.8 / cutmix 1.0 with label smoothing 0.1, linear warmup then cosine, stepped per optimizer update;
the classifier reads the class token.  The pieces are timm's (:mod:`.finetune_recipe`).

Each epoch trains, evaluates top-1/top-5 on val, and writes a checkpoint into the work dir
(:mod:`.finetune_state`).  Rerunning the same command resumes from it (``checkpointing.resume``,
default true) and ends with the same numbers as an uninterrupted run; a rerun of a finished run
reports its numbers again without training.  A checkpoint of another configuration in the work dir
(the default work dir is per backbone, task and seed, not per preset) is refused before the run,
naming the differing keys.  The record has the final top-1/top-5, the best top-1 and its epoch
(1-based), the per-epoch history (``history.epoch_NNN``) and the images used / corrupt per split;
its artifacts say from which epoch the run resumed (``resumed_from_epoch``) and in what precision it
trained.

Devices and processes:

- CUDA: autocast ``amp`` (``bf16`` by default, no grad scaler needed; ``fp16`` uses a
  ``GradScaler``); the CPU always trains in fp32.
- DDP: started by ``torchrun`` (``WORLD_SIZE`` > 1), the process group is initialised from the
  environment (NCCL on CUDA, gloo on CPU), the model wrapped in ``DistributedDataParallel``, the
  training set sharded by ``DistributedSampler`` and the validation set split into disjoint strided
  shards whose counts are summed with ``all_reduce``, so every rank returns the same metrics.
  ``train.batch_size`` is the global batch per optimizer update (split over ranks and
  ``grad_accum_steps``).  Only rank 0 writes checkpoints and artifacts; the work dir must be on a
  file system every rank sees (one node, or a shared disk).  Records: ``harmony_bench.runner.run``
  writes the record on rank 0 only (``runtime.is_main_process``), so one run is one record.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench import events
from harmony_bench.results import metric
from harmony_bench.run_identity import CheckpointMismatchError, identity_hash, run_identity
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.runtime import (
    ProcessGroup,
    all_reduce_sum,
    autocast,
    barrier,
    check_amp,
    default_device_type,
    effective_amp,
    init_process_group,
    precision_label,
    rank_device,
    select_device,
    world_size,
)
from harmony_bench.tasks.imagenet import finetune_recipe as recipe
from harmony_bench.tasks.imagenet import finetune_state as state
from harmony_bench.tasks.imagenet.common import (
    check_data,
    data_report,
    percent,
    topk_correct,
    write_json_artifact,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Any:
    """Deterministic kernels for the run (restored afterwards); otherwise cuDNN autotuning, as BEiT."""
    import torch

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    benchmark = torch.backends.cudnn.benchmark
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = benchmark


# --------------------------------------------------------------------------- checks


def batch_plan(config: dict[str, Any], world: int) -> tuple[int, int]:
    """``(per-process micro-batch, gradient accumulation steps)`` from the global ``train.batch_size``."""
    global_batch, accum = int(config["train"]["batch_size"]), int(config["train"]["grad_accum_steps"])
    if accum < 1 or global_batch % (world * accum):
        raise ValueError(
            f"train.batch_size {global_batch} must be divisible by world size {world} x "
            f"train.grad_accum_steps {accum}"
        )
    micro = global_batch // (world * accum)
    mixing = float(config["mixup"]["mixup_alpha"]) > 0 or float(config["mixup"]["cutmix_alpha"]) > 0
    if mixing and micro % 2:
        raise ValueError(f"mixup/cutmix needs an even per-process batch, got {micro}")
    return micro, accum


def check_config(config: dict[str, Any]) -> None:
    """Fail early on values the run would only trip over later."""
    check_amp(config["amp"])
    if config["normalize"] not in recipe.NORMALIZE:
        raise ValueError(f"normalize must be one of {recipe.NORMALIZE}, got {config['normalize']!r}")
    if config["model"]["global_pool"] not in recipe.GLOBAL_POOLS:
        raise ValueError(f"model.global_pool must be one of {recipe.GLOBAL_POOLS}")
    if config["model"]["fc_norm"] and config["model"]["global_pool"] != "avg":
        raise ValueError("model.fc_norm true needs model.global_pool avg (MAE's global pooling)")
    if config["optim"]["lr_scaling"] not in recipe.LR_SCALINGS:
        raise ValueError(f"optim.lr_scaling must be one of {recipe.LR_SCALINGS}")
    if config["optim"]["layer_decay_rule"] not in recipe.LAYER_RULES:
        raise ValueError(f"optim.layer_decay_rule must be one of {sorted(recipe.LAYER_RULES)}")
    if config["optim"].get("lr_scaling_scope", "peak") not in recipe.LR_SCALING_SCOPES:
        raise ValueError(f"optim.lr_scaling_scope must be one of {recipe.LR_SCALING_SCOPES}")
    if config["schedule"]["step"] not in recipe.SCHEDULE_STEPS:
        raise ValueError(f"schedule.step must be one of {recipe.SCHEDULE_STEPS}")
    if not isinstance(config["checkpointing"]["resume"], bool):
        raise ValueError("checkpointing.resume must be true or false")
    epochs, warmup = int(config["schedule"]["epochs"]), int(config["schedule"]["warmup_epochs"])
    if epochs < 1 or not 0 <= warmup < epochs:
        raise ValueError(f"need schedule.epochs >= 1 and 0 <= warmup_epochs < epochs, got {epochs}, {warmup}")
    batch_plan(config, world_size())


def preflight(context: TaskContext) -> None:
    """Before any record: the dataset layout, the config values, and an existing checkpoint's identity."""
    root = check_data(context, ["train", "val"])
    check_config(context.config)
    rule = context.config["optim"]["layer_decay_rule"]
    if recipe.rule_architecture(rule) != recipe.card_architecture(context.card):
        raise ValueError(
            f"preset {context.options.preset or context.task.default_preset} uses optim.layer_decay_rule "
            f"{rule!r}, defined over {recipe.rule_architecture(rule).upper()} layers, but "
            f"{context.card.name} is a {recipe.card_architecture(context.card).upper()}; {recipe.RULE_HINT}"
        )
    device = select_device(context.config.get("device"))
    identity = run_identity(context, root, world_size(), device.type)
    state.check_resumable(context.work_dir, identity, bool(context.config["checkpointing"]["resume"]))


# --------------------------------------------------------------------------- training


@dataclass
class Trainer:
    """The objects of one fine-tuning run and the loop over epochs."""

    model: nn.Module  # DDP-wrapped under torchrun
    module: nn.Module  # the plain model (optimizer, checkpoints, evaluation)
    optimizer: Any
    scheduler: Any
    scaler: Any
    mixup: Any
    criterion: nn.Module
    device: torch.device
    amp: str
    accum: int
    clip_grad: float | None
    per_iteration: bool
    proc: ProcessGroup
    step_after: bool = False  # schedule.step iteration-after: set the lr after each update (SimMIM)
    num_updates: int = 0
    history: list[dict[str, float | None]] = field(default_factory=list)

    def train_epoch(self, loader: Any, epoch: int) -> float | None:
        """One pass over the training loader; returns the mean training loss over ranks."""
        import torch

        self.model.train()
        if not self.per_iteration:
            self.scheduler.step(epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        micro = 0
        for batch in loader:
            batch = _even(batch) if self.mixup is not None else batch
            if batch is None:  # the batch's images were corrupt (counted in the record)
                continue
            images, targets = (t.to(self.device, non_blocking=True) for t in batch)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            micro += 1
            update = micro % self.accum == 0
            sync = contextlib.nullcontext() if update or self.proc.world == 1 else self.model.no_sync()
            with sync:
                with autocast(self.device, self.amp, training=True):
                    loss = self.criterion(self.model(images), targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss is {loss.item()} at epoch {epoch + 1}, step {micro}"
                    )
                self.scaler.scale(loss / self.accum).backward()
            loss_sum += torch.stack(
                [loss.detach().double(), torch.ones((), dtype=torch.float64, device=self.device)]
            )
            if update:
                self._step()
        all_reduce_sum(loss_sum, self.proc)
        return float(loss_sum[0] / loss_sum[1]) if loss_sum[1] else None

    def _step(self) -> None:
        import torch

        if self.per_iteration and not self.step_after:
            # the lr of this update, as BEiT sets lr_schedule_values[it] before its step
            self.scheduler.step_update(self.num_updates)
        if self.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.step_after:  # SimMIM: step_update(epoch * num_steps + idx) after the update idx
            self.scheduler.step_update(self.num_updates)
        self.num_updates += 1

    def evaluate(self, loader: Any) -> dict[str, float | None]:
        """Top-1/top-5 (%) and mean cross-entropy on this rank's val shard, summed over ranks."""
        import torch
        import torch.nn.functional as F

        self.module.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # images, top1, top5, loss
        with torch.no_grad():
            for batch in loader:
                if batch is None:
                    continue
                images, targets = (t.to(self.device, non_blocking=True) for t in batch)
                with autocast(self.device, self.amp, training=True):
                    logits = self.module(images)
                hits = topk_correct(logits.float(), targets, (1, 5))
                loss = F.cross_entropy(logits.float(), targets, reduction="sum")
                sums += torch.tensor(
                    [len(targets), hits[1], hits[5], loss.item()], dtype=torch.float64, device=self.device
                )
        all_reduce_sum(sums, self.proc)
        total = int(sums[0])
        return {
            "top1": percent(float(sums[1]), total),
            "top5": percent(float(sums[2]), total),
            "val_loss": float(sums[3]) / total if total else None,
        }

    def current_lr(self) -> float:
        """The lr of the top layer (lr scale 1) after the last update."""
        return max(
            float(group["lr"]) / float(group.get("lr_scale", 1.0)) for group in self.optimizer.param_groups
        )

    def state_dict(self) -> dict[str, Any]:
        """Training state for the checkpoint."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "num_updates": self.num_updates,
            "history": self.history,
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.module.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.num_updates = int(payload["num_updates"])
        self.history = list(payload["history"])


def _even(batch: Any) -> Any:
    """Drop the last sample of an odd batch (mixup pairs samples; corrupt images can make a batch odd).

    Returns None for a batch left with no pair (``skip_corrupt_collate`` gives None for an all-corrupt one).
    """
    if batch is None or len(batch[1]) < 2:
        return None
    images, targets = batch
    if len(targets) % 2:
        return images[:-1], targets[:-1]
    return images, targets


# --------------------------------------------------------------------------- run


def _loaders(
    context: TaskContext,
    root: Path,
    prep: dict[str, Any],
    proc: ProcessGroup,
    micro: int,
    device: Any,
    fresh: bool,
) -> Any:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, Subset

    from harmony_bench.data.imagenet import imagenet_split, skip_corrupt_collate

    config = context.config
    logs = {split: context.work_dir / f"corrupt-{split}.jsonl" for split in ("train", "val")}
    if proc.main:
        context.work_dir.mkdir(parents=True, exist_ok=True)
        for path in logs.values() if fresh else ():  # a resumed run keeps the events its epochs saw
            path.unlink(missing_ok=True)  # events of this run only
    barrier(proc)
    train = imagenet_split(
        root, "train", recipe.train_transform(config["augment"], prep), corrupt_log=logs["train"]
    )
    val = imagenet_split(root, "val", recipe.eval_transform(prep), corrupt_log=logs["val"])
    if len(train.classes) != len(val.classes):
        raise ValueError(f"train has {len(train.classes)} classes but val has {len(val.classes)}")
    sampler = DistributedSampler(
        train, num_replicas=proc.world, rank=proc.rank, shuffle=True, seed=context.options.seed
    )
    generator = torch.Generator()
    workers = int(config["train"]["num_workers"])
    train_loader = DataLoader(
        train,
        batch_size=micro,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        collate_fn=skip_corrupt_collate,
        generator=generator,
        persistent_workers=False,
    )
    shard = Subset(val, range(proc.rank, len(val), proc.world)) if proc.world > 1 else val
    val_loader = DataLoader(
        shard,
        batch_size=int(config["eval"]["batch_size"]),
        shuffle=False,
        num_workers=int(config["eval"]["num_workers"]),
        pin_memory=device.type == "cuda",
        collate_fn=skip_corrupt_collate,
    )
    return train, val, sampler, generator, train_loader, val_loader


def run(context: TaskContext) -> TaskOutcome:
    """Fine-tune, evaluating and checkpointing every epoch; resume from a matching checkpoint."""
    config = context.config
    check_config(config)
    root = check_data(context, ["train", "val"])
    proc = init_process_group(default_device_type())
    try:
        device = rank_device(select_device(config.get("device")), proc)
        with determinism(bool(config["deterministic"]), device):
            return _run(context, root, proc, device)
    finally:
        if proc.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(context: TaskContext, root: Path, proc: ProcessGroup, device: torch.device) -> TaskOutcome:
    import torch

    from harmony_bench.data.imagenet import dataset_identity

    config, seed = context.config, context.options.seed
    identity = run_identity(context, root, proc.world, device.type)
    digest = identity_hash(identity)
    sidecar = state.check_resumable(context.work_dir, identity, bool(config["checkpointing"]["resume"]))
    micro, accum = batch_plan(config, proc.world)
    prep = recipe.preprocessing(context)
    train, val, sampler, generator, train_loader, val_loader = _loaders(
        context, root, prep, proc, micro, device, fresh=sidecar is None
    )
    updates_per_epoch = len(train_loader) // accum
    if updates_per_epoch < 1:
        raise ValueError(
            f"{len(train)} training images give no full batch of {micro * accum * proc.world} "
            f"({proc.world} process(es)); lower train.batch_size"
        )

    model, _ = recipe.build_classifier(context, len(train.classes), prep)
    model.to(device)
    module = model
    if proc.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    batch = int(config["train"]["batch_size"])
    optimizer = recipe.build_optimizer(module, config["optim"], batch)
    factor = recipe.schedule_lr_factor(config["optim"], batch)
    scheduler = recipe.build_scheduler(optimizer, config["schedule"], updates_per_epoch, factor)
    mixup, criterion = recipe.build_mixup(config["mixup"], len(train.classes))
    amp = effective_amp(device.type, config["amp"], training=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    clip = config["optim"].get("clip_grad")
    trainer = Trainer(
        model=model,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        mixup=mixup,
        criterion=criterion,
        device=device,
        amp=amp,
        accum=accum,
        clip_grad=float(clip) if clip is not None else None,
        per_iteration=config["schedule"]["step"] != "epoch",
        proc=proc,
        step_after=config["schedule"]["step"] == "iteration-after",
    )

    start = 0
    pt_path, _ = state.checkpoint_paths(context.work_dir)
    if sidecar is not None:
        payload = state.load_checkpoint(pt_path)
        if payload["identity_hash"] != digest:  # the sidecar said yes; the .pt is authoritative
            raise CheckpointMismatchError(f"{pt_path} was written under another configuration")
        trainer.load_state_dict(payload)
        state.restore_rng(payload["rng"], generator)
        start = int(payload["epoch"])
        if start >= int(config["schedule"]["epochs"]):
            log.info("%s holds the finished run: reporting its numbers without training", pt_path)
        else:
            log.info("resuming %s at epoch %d of %d", pt_path, start + 1, config["schedule"]["epochs"])

    epochs = int(config["schedule"]["epochs"])
    for epoch in range(start, epochs):
        state.seed_epoch(seed, epoch, proc.rank, generator)
        sampler.set_epoch(epoch)
        train_loss = trainer.train_epoch(train_loader, epoch)
        scores = trainer.evaluate(val_loader)
        trainer.history.append(
            {"epoch": epoch + 1, "train_loss": train_loss, "lr": trainer.current_lr(), **scores}
        )
        log.info("epoch %d/%d: %s", epoch + 1, epochs, trainer.history[-1])
        if proc.main:
            state.save_checkpoint(
                context.work_dir,
                {
                    **trainer.state_dict(),
                    "epoch": epoch + 1,
                    "rng": state.capture_rng(generator),
                    "identity": identity,
                    "identity_hash": digest,
                },
            )
        barrier(proc)
        events.emit("epoch_end", epoch=epoch, work_dir=context.work_dir)

    metrics = history_metrics(trainer.history)
    corrupt = {"train": train.corrupt, "val": val.corrupt}  # every rank's events (one shared log per split)
    counts = {split: len(ds) - len(corrupt[split]) for split, ds in (("train", train), ("val", val))}
    # the same metrics on every rank; only rank 0 writes into the work dir (others list into rank<N>/)
    report_context = (
        context if proc.main else replace(context, work_dir=context.work_dir / f"rank{proc.rank}")
    )
    data_metrics, artifacts = data_report(report_context, counts, corrupt)
    metrics.update(data_metrics)
    files = {
        "param_groups": ("finetune-param-groups.json", recipe.param_group_table(module, optimizer)),
        "history": ("finetune-history.json", trainer.history),
    }
    for key, (name, payload) in files.items():
        artifacts[key] = (
            write_json_artifact(context, name, payload) if proc.main else str(context.work_dir / name)
        )
    artifacts.update(
        {
            "checkpoint": str(pt_path),
            "run_identity_hash": digest,
            "resumed_from_epoch": str(start),
            "schedule_step": config["schedule"]["step"],
            "precision": precision_label(device.type, config["amp"], training=True),
        }
    )
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


def history_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Final top-1/top-5, best top-1 and its (1-based) epoch, and the per-epoch history group."""
    final = history[-1]
    scored = [row for row in history if row["top1"] is not None]
    best = max(scored, key=lambda row: row["top1"]) if scored else None  # first epoch among equals
    group = {
        f"epoch_{row['epoch']:03d}": {
            "top1": metric(row["top1"], unit="%"),
            "top5": metric(row["top5"], unit="%"),
            "val_loss": metric(row["val_loss"], higher_is_better=False),
            "train_loss": metric(row["train_loss"], higher_is_better=False),
            "lr": metric(row["lr"], higher_is_better=False),
        }
        for row in history
    }
    return {
        "top1": metric(final["top1"], unit="%"),
        "top5": metric(final["top5"], unit="%"),
        "best_top1": metric(best["top1"] if best else None, unit="%"),
        # which epoch scored best; "higher is better" has no meaning here and is set false
        "best_epoch": metric(best["epoch"] if best else None, higher_is_better=False, unit="epoch"),
        "history": group,
    }


RUNNER = TaskRunner(run=run, preflight=preflight)
