"""``imagenet-linear``: linear heads on a frozen backbone, trained the way the source's script trains them.

The protocol file (``benchmarks/imagenet/imagenet-linear.yaml``) restates one script per preset: Harmony's
``eval/eval_linear.py`` (``paper``, the default), DINOv2's ``eval/linear.py`` (``dinov2``), SLIP's
``main_linear.py`` (``slip``), iBOT's ``evaluation/eval_linear_multi.py`` (``ibot-vit-s``/``-b``) and
MAE's ``main_linprobe.py`` (``mae-vit-b``/``-l``/``-h``).  The heads, optimizer and schedule are in
:mod:`.linear_heads`, the train transform and batching in :mod:`.linear_data`.

Modes (``mode``):

- ``augmented`` (every source): each epoch the train images go through ``RandomResizedCrop`` + flip and the
  frozen backbone again, as the scripts recompute features in their training loop.  The val features
  (eval transform, deterministic) are extracted once, kept in ``features.storage`` precision and cached;
  the heads are evaluated on them every ``eval.every`` epochs and after the last.
- ``cached`` (preset ``fast``): the eval-transform features of train and val are extracted once and
  cached; training reads the cache, so it sees no augmentation.  A deliberate deviation, recorded.

The reported ``top1`` is the best head's, maximised over the evaluated epochs (``report: max``: Harmony,
iBOT, SLIP, MAE) or after the last epoch (``report: final``: DINOv2); ``final_top1``, ``best_epoch``, the
final grid of every head and the per-epoch history are in the record too.

Processes.  Under ``torchrun`` (``WORLD_SIZE`` > 1, augmented mode) every rank extracts its share of each
global batch (``step[rank::world]``), divides its summed loss by the global number of rows, and the heads'
gradients are summed with ``all_reduce``: the update equals the one-process update on the whole batch
(Harmony wraps its heads in DDP, which averages per-rank means of equal shares: the same thing).  BatchNorm
running statistics are broadcast from rank 0 after every update, as DDP does with buffers.  Every rank
reads (or extracts) the cached val features and evaluates every head on all of them: identical numbers.
Only rank 0 writes checkpoints and artifacts.

Resume.  After every epoch rank 0 writes ``<work_dir>/linear-checkpoint.pt`` (heads, optimizer, history,
epoch) and a ``.json`` sidecar with the run identity (the same identity as ``imagenet-finetune``: config,
backbone, seed, world size, device type, data root).  Rerunning the command resumes from it; a checkpoint of
another identity is refused before the run (``--set checkpointing.resume=false`` starts over).  Each epoch's
shuffling and augmentation depend only on (seed, epoch, rank), so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.run_identity import run_identity
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.runtime import check_amp, precision_label
from harmony_bench.tasks.imagenet import linear_data, linear_heads
from harmony_bench.tasks.imagenet.common import check_data, data_report, write_json_artifact
from harmony_bench.tasks.imagenet.features import STORAGE_DTYPES, Variant

if TYPE_CHECKING:
    import torch

    from harmony_bench.models.backbone import Backbone
    from harmony_bench.runtime import ProcessGroup

log = logging.getLogger(__name__)

MODES = ("augmented", "cached")
REPORTS = ("max", "final")
CHECKPOINT_NAME = "linear-checkpoint.pt"
SIDECAR_NAME = "linear-checkpoint.json"
CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------- checks


def check_config(config: dict[str, Any]) -> list[Variant]:
    """Refuse values the run would only trip over later; returns the parsed feature variants."""
    from torchvision.transforms import InterpolationMode

    if config["mode"] not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config['mode']!r}")
    variants = [Variant.parse(name) for name in config["features"]["variants"]]
    if not variants:
        raise ValueError("features.variants must name at least one variant")
    check_amp(config["features"]["amp"], "features.amp")
    if config["features"]["storage"] not in STORAGE_DTYPES:
        raise ValueError(f"features.storage must be one of {sorted(STORAGE_DTYPES)}")
    head, train = config["head"], config["train"]
    for key, allowed in (("norm", linear_heads.HEAD_NORMS), ("init", linear_heads.INITS)):
        if head[key] not in allowed:
            raise ValueError(f"head.{key} must be one of {allowed}, got {head[key]!r}")
    for key, allowed in (("optimizer", linear_heads.OPTIMIZERS), ("lr_scaling", linear_heads.LR_SCALINGS)):
        if train[key] not in allowed:
            raise ValueError(f"train.{key} must be one of {allowed}, got {train[key]!r}")
    if train["schedule"]["step"] not in linear_heads.SCHEDULE_STEPS:
        raise ValueError(f"train.schedule.step must be one of {linear_heads.SCHEDULE_STEPS}")
    lrs = train["learning_rates"]
    if not lrs or any(float(lr) <= 0 for lr in lrs):
        raise ValueError(f"train.learning_rates must be positive numbers, got {lrs!r}")
    epochs, batch = int(train["epochs"]), int(train["batch_size"])
    warmup = float(train["schedule"]["warmup_epochs"])
    if epochs < 1 or batch < 1 or not 0 <= warmup < epochs:
        raise ValueError(
            f"need train.epochs >= 1, train.batch_size >= 1 and 0 <= schedule.warmup_epochs < epochs; got "
            f"{epochs}, {batch}, {warmup}"
        )
    if train["lr_scaling"] == "slip" and batch % int(train["gpus"]):
        raise ValueError(
            f"lr_scaling slip: train.batch_size {batch} must divide into train.gpus {train['gpus']}"
        )
    if train["steps_per_epoch"] is not None and int(train["steps_per_epoch"]) < 1:
        raise ValueError("train.steps_per_epoch must be null (one pass per epoch) or >= 1")
    if int(config["eval"]["every"]) < 1:
        raise ValueError("eval.every must be >= 1 (epochs)")
    if config["report"] not in REPORTS:
        raise ValueError(f"report must be one of {REPORTS}, got {config['report']!r}")
    spec = config["train_transform"]
    if spec["sampler"] not in linear_data.SAMPLERS:
        raise ValueError(f"train_transform.sampler must be one of {linear_data.SAMPLERS}")
    InterpolationMode(spec["interpolation"])  # ValueError names the value
    if not isinstance(config["checkpointing"]["resume"], bool):
        raise ValueError("checkpointing.resume must be true or false")
    return variants


def preflight(context: TaskContext) -> None:
    """Before any record: the dataset, the config values, the process count, an existing checkpoint."""
    from harmony_bench.runtime import select_device, world_size

    root = check_data(context, ["train", "val"])
    check_config(context.config)
    world = world_size()
    if world > 1 and context.config["mode"] == "cached":
        raise ValueError("mode cached runs in one process; run it without torchrun (it trains in seconds)")
    identity = run_identity(context, root, world, select_device(context.config.get("device")).type)
    _resumable(context, identity)


# --------------------------------------------------------------------------- checkpoints


def _resumable(context: TaskContext, identity: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from, None to start fresh, or refuse one of another identity."""
    import json

    from harmony_bench.run_identity import refuse_other_identity

    pt_path, json_path = context.work_dir / CHECKPOINT_NAME, context.work_dir / SIDECAR_NAME
    if not pt_path.is_file():
        return None
    if not context.config["checkpointing"]["resume"]:
        log.warning(
            "checkpointing.resume is false: ignoring %s, it is replaced after the first epoch", pt_path
        )
        return None
    if json_path.is_file():  # the readable account of the run, with the differing keys
        stored = json.loads(json_path.read_text(encoding="utf-8"))
        refuse_other_identity(stored, identity, context.work_dir, "a linear-probe checkpoint")
    # the .pt is authoritative: a crash between two writes can leave another run's heads beside the sidecar
    refuse_other_identity(_load(pt_path), identity, context.work_dir, "a linear-probe checkpoint")
    return pt_path


def _load(path: Path) -> dict[str, Any]:
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an imagenet-linear checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


def _save(work_dir: Path, payload: dict[str, Any]) -> None:
    import torch

    from harmony_bench.atomic import atomic_write, atomic_write_json

    payload = {"format": CHECKPOINT_FORMAT, **payload}
    atomic_write(work_dir / CHECKPOINT_NAME, lambda handle: torch.save(payload, handle))
    sidecar = {key: payload[key] for key in ("format", "identity_hash", "identity", "epoch")}
    atomic_write_json(work_dir / SIDECAR_NAME, sidecar)


# --------------------------------------------------------------------------- data


def _load_backbone(context: TaskContext, prep: dict[str, Any]) -> Backbone:
    from harmony_bench.models.backbone import load_backbone
    from harmony_bench.tasks.imagenet.finetune_recipe import input_size

    card = context.card
    native = int(card.preprocessing.get("crop") or card.preprocessing["input_size"])
    size = input_size(prep)
    overrides = {"img_size": size} if size != native else {}
    backbone = load_backbone(
        card, context.options.checkpoint, trust_checkpoint=context.options.trust_checkpoint, **overrides
    )
    return backbone.eval()


def _split(
    context: TaskContext, root: Path, split: str, transform: Any, fresh: bool, proc: ProcessGroup
) -> Any:
    """A split whose corrupt-image events go to ``<work_dir>/corrupt-<split>.jsonl`` (kept on resume)."""
    from harmony_bench.data.imagenet import imagenet_split
    from harmony_bench.runtime import barrier

    log_path = context.work_dir / f"corrupt-{split}.jsonl"
    if fresh and proc.main:
        log_path.unlink(missing_ok=True)  # events of this run only
    barrier(proc)
    return imagenet_split(root, split, transform, corrupt_log=log_path)


def _features_once(
    context: TaskContext, backbone: Backbone, dataset: Any, spec: Any, transform: Any, split: str
) -> tuple[dict[str, Any], str, bool]:
    """Cached features of a whole split (extracted on a miss).

    Under torchrun every rank reads or extracts the split itself: no rank waits on another's extraction
    (a barrier would time out on a large model's val pass), and concurrent writes of the same cache entry
    are atomic replacements by identical content.
    """
    from harmony_bench.tasks.imagenet.features import cache_for, cached_features

    extract = context.config["extract"]
    device = next(backbone.model.parameters()).device
    return cached_features(
        cache_for(context), backbone, dataset, spec, transform, split, device,
        int(extract["batch_size"]), int(extract["num_workers"]),
    )  # fmt: skip


def _cached_batches(
    store: dict[str, Any], variants: list[Variant], steps: list[torch.Tensor], device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    from harmony_bench.tasks.imagenet.features import variant_features

    for step in steps:
        index = step.to(store["labels"].device)
        yield (
            {v.name: variant_features(store, v, index).to(device) for v in variants},
            store["labels"][index].to(device),
        )


def _augmented_batches(
    backbone: Backbone,
    dataset: Any,
    spec: Any,
    variants: list[Variant],
    steps: list[torch.Tensor],
    config: dict[str, Any],
    proc: ProcessGroup,
    device: torch.device,
    generator: torch.Generator,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """This rank's share of every step: augmented images through the frozen backbone, as features."""
    import torch
    from torch.utils.data import DataLoader

    from harmony_bench.data.imagenet import skip_corrupt_collate
    from harmony_bench.runtime import autocast
    from harmony_bench.tasks.imagenet.features import batch_features, variant_features

    sampler = linear_data.StepMicroBatches(steps, proc.rank, proc.world, int(config["extract"]["batch_size"]))
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=int(config["extract"]["num_workers"]),
        pin_memory=device.type == "cuda",
        collate_fn=skip_corrupt_collate,
        generator=generator,
        persistent_workers=False,
    )
    batches = iter(loader)
    for count in sampler.counts:
        parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        targets = []
        for _ in range(count):
            batch = next(batches)
            if batch is None:  # every image of the micro-batch was corrupt (counted in the record)
                continue
            images, labels = batch
            with torch.no_grad(), autocast(device, spec.amp):
                out = batch_features(backbone, images.to(device, non_blocking=True), spec)
            for name, tensor in out.items():
                parts[name].append(tensor.float())
            targets.append(labels)
        if not targets:
            yield {}, torch.zeros(0, dtype=torch.long, device=device)
            continue
        store = {name: torch.cat(tensors) for name, tensors in parts.items()}
        yield {v.name: variant_features(store, v) for v in variants}, torch.cat(targets).to(device)


# --------------------------------------------------------------------------- training


def train_step(
    grid: linear_heads.HeadGrid,
    optimizer: torch.optim.Optimizer,
    features: dict[str, torch.Tensor],
    targets: torch.Tensor,
    proc: ProcessGroup,
) -> None:
    """One update of every head on one global batch (this rank holds ``targets``' share of it)."""
    import torch

    from harmony_bench.runtime import all_reduce_sum

    device = next(grid.parameters()).device
    count = torch.tensor([float(targets.numel())], dtype=torch.float64, device=device)
    total = float(all_reduce_sum(count, proc).item())
    if total == 0:
        return  # every image of the step was corrupt
    optimizer.zero_grad(set_to_none=True)
    if targets.numel():
        loss = grid.loss(features, targets) / total  # = sum over heads of each head's mean loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"linear-probe loss is {loss.item()}")
        loss.backward()
    if proc.world > 1:
        import torch.distributed as dist

        for param in grid.parameters():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        for buffer in grid.buffers():
            dist.broadcast(buffer, src=0)
    optimizer.step()


def _due(epoch: int, epochs: int, every: int) -> bool:
    """Evaluate after epoch ``epoch`` (0-based): every ``every`` epochs and after the last."""
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


def run(context: TaskContext) -> TaskOutcome:
    """Train the heads (augmented or cached features), evaluate them, report as the source does."""
    from harmony_bench.runtime import default_device_type, init_process_group, rank_device, select_device

    check_config(context.config)
    root = check_data(context, ["train", "val"])
    proc = init_process_group(default_device_type())
    try:
        return _run(context, root, proc, rank_device(select_device(context.config.get("device")), proc))
    finally:
        if proc.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(context: TaskContext, root: Path, proc: ProcessGroup, device: torch.device) -> TaskOutcome:
    import torch

    from harmony_bench.data.imagenet import dataset_identity
    from harmony_bench.models.preprocess import eval_transform
    from harmony_bench.run_identity import identity_hash
    from harmony_bench.runtime import barrier
    from harmony_bench.tasks.imagenet.features import FeatureSpec, variant_features
    from harmony_bench.tasks.imagenet.finetune_recipe import preprocessing
    from harmony_bench.tasks.imagenet.finetune_state import seed_epoch

    config, seed = context.config, context.options.seed
    variants = check_config(config)
    identity = run_identity(context, root, proc.world, device.type)
    resume_from = _resumable(context, identity)
    payload = _load(resume_from) if resume_from is not None else None
    fresh = payload is None
    if proc.main:
        context.work_dir.mkdir(parents=True, exist_ok=True)

    prep = preprocessing(context)
    backbone = _load_backbone(context, prep).to(device)
    evaluation = eval_transform(prep)
    features = config["features"]
    spec = FeatureSpec.covering(variants, features["amp"], features["storage"])
    val_set = _split(context, root, "val", evaluation, fresh, proc)
    val, val_key, val_hit = _features_once(context, backbone, val_set, spec, evaluation, "val")
    keys, hits_cache = {"val": val_key}, {"val": val_hit}
    augmented = config["mode"] == "augmented"
    if augmented:
        train_set = _split(
            context, root, "train", linear_data.train_transform(config["train_transform"], prep), fresh, proc
        )
        n_train, train_classes, train_store = len(train_set), list(train_set.classes), None
    else:
        train_set = _split(context, root, "train", evaluation, fresh, proc)
        train_store, keys["train"], hits_cache["train"] = _features_once(
            context, backbone, train_set, spec, evaluation, "train"
        )
        n_train, train_classes = int(train_store["count"]), list(train_set.classes)
        train_corrupt = [tuple(e) for e in train_store["corrupt"]]  # a cache hit never reads the images
        train_store = {k: v.to(device) for k, v in train_store.items() if k in ("cls", "avgpool", "labels")}
    if train_classes != list(val_set.classes):
        raise ValueError(
            f"train/ and val/ of {root} have different class folders ({len(train_classes)} vs "
            f"{len(val_set.classes)}); they must hold the same wnids"
        )
    if n_train == 0 or val["count"] == 0:
        raise ValueError(f"no readable image in {root / ('train' if n_train == 0 else 'val')}")

    train = config["train"]
    lrs = [float(lr) for lr in train["learning_rates"]]
    dims = {v.name: variant_features(val, v, slice(0, 1)).shape[1] for v in variants}
    grid = linear_heads.HeadGrid(dims, len(train_classes), len(lrs), config["head"], seed).to(device)
    optimizer = linear_heads.build_optimizer(grid, lrs, train)
    history: list[dict[str, Any]] = []
    start = 0
    if payload is not None:
        grid.load_state_dict(payload["grid"])
        optimizer.load_state_dict(payload["optimizer"])
        history, start = list(payload["history"]), int(payload["epoch"])
        log.info("resuming %s after epoch %d", resume_from, start)

    epochs, batch = int(train["epochs"]), int(train["batch_size"])
    per_epoch = train["steps_per_epoch"]
    per_epoch = int(per_epoch) if per_epoch is not None else None
    drop_last, schedule = bool(train["drop_last"]), train["schedule"]
    updates = linear_data.steps_in_epoch(n_train, batch, per_epoch, drop_last)
    if updates < 1:
        raise ValueError(f"{n_train} training images give no full batch of {batch}; lower train.batch_size")
    log.info(
        "linear probe (%s): %d variants x %d lrs, %d epochs of %d updates of %d images",
        config["mode"], len(variants), len(lrs), epochs, updates, batch,
    )  # fmt: skip
    generator = torch.Generator()
    digest = identity_hash(identity)
    for epoch in range(start, epochs):
        seed_epoch(seed, epoch, proc.rank, generator)
        steps = linear_data.epoch_steps(n_train, batch, epoch, seed, per_epoch, drop_last)
        if augmented:
            batches = _augmented_batches(
                backbone, train_set, spec, variants, steps, config, proc, device, generator
            )
        else:
            batches = _cached_batches(train_store, variants, steps, device)
        grid.train()
        if schedule["step"] == "epoch":
            linear_heads.set_lrs(optimizer, float(epoch), epochs, schedule)
        for index, (step_features, targets) in enumerate(batches):
            if schedule["step"] == "iteration":
                linear_heads.set_lrs(optimizer, epoch + index / updates, epochs, schedule)
            train_step(grid, optimizer, step_features, targets, proc)
        if _due(epoch, epochs, int(config["eval"]["every"])):
            hits = linear_heads.grid_hits(grid, val, variants, device, int(config["eval"]["batch_size"]))
            history.append({"epoch": epoch + 1, "hits": hits})
            log.info("epoch %d/%d: best head %s", epoch + 1, epochs, linear_heads.best_cell(hits, lrs))
        if proc.main:
            _save(
                context.work_dir,
                {
                    "identity": identity,
                    "identity_hash": digest,
                    "epoch": epoch + 1,
                    "grid": grid.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                },
            )
        barrier(proc)

    metrics, artifacts = linear_heads.report_metrics(history, lrs, int(val["count"]), config["report"])
    corrupt = {"val": [tuple(e) for e in val["corrupt"]]}
    if augmented:
        corrupt["train"] = list(train_set.corrupt)
        counts = {"train": n_train - len(corrupt["train"]), "val": int(val["count"])}
    else:
        corrupt["train"] = train_corrupt
        counts = {"train": n_train, "val": int(val["count"])}
    report_context = (
        context if proc.main else replace(context, work_dir=context.work_dir / f"rank{proc.rank}")
    )
    data_metrics, data_artifacts = data_report(report_context, counts, corrupt)
    metrics.update(data_metrics)
    artifacts.update(data_artifacts)
    files = {
        "grid": ("linear_grid.json", {"metrics": metrics["grid"]}),
        "history": ("linear_history.json", history),
    }
    for key, (name, content) in files.items():
        artifacts[key] = (
            write_json_artifact(context, name, content) if proc.main else str(context.work_dir / name)
        )
    artifacts.update(
        {
            "mode": config["mode"],
            "feature_cache_key_val": keys["val"],
            "feature_cache_hits": ",".join(s for s in ("train", "val") if hits_cache.get(s)) or "none",
            "resumed_from_epoch": str(start),
            "extraction_precision": precision_label(device.type, features["amp"]),
            "checkpoint": str(context.work_dir / CHECKPOINT_NAME),
        }
    )
    if "train" in keys:
        artifacts["feature_cache_key_train"] = keys["train"]
    return TaskOutcome(metrics=metrics, dataset=dataset_identity(root), artifacts=artifacts)


RUNNER = TaskRunner(run=run, preflight=preflight)
