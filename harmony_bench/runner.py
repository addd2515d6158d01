"""Run one backbone × task × seed and write its result record, whatever happens.

The task runner (named by the protocol file) does the work and returns
metrics; this module owns everything around it that must be the same for every
task: resolving the config, seeding, timing, provenance, and writing exactly
one record per run — ``completed`` with metrics, or ``failed`` with the error —
so an interrupted or crashed run is visible in the results instead of missing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harmony_bench.cards import BackboneCard
from harmony_bench.models.names import ResolvedBackbone
from harmony_bench.preflight import check_checkpoint, check_writable_dir
from harmony_bench.protocols import TaskSpec, get_task
from harmony_bench.runtime import is_main_process
from harmony_bench.threads import configure_threads, max_workers

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """What the user chose on the command line for one run."""

    checkpoint: str | None = None
    trust_checkpoint: bool = False
    data_root: Path | None = None
    preset: str | None = None
    seed: int = 0
    output: Path | None = None
    work_dir: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """Everything a task runner gets: the card, the resolved protocol config, paths and seed.

    Task runners load the backbone themselves (``load_backbone(context.card, context.options.checkpoint,
    trust_checkpoint=context.options.trust_checkpoint)``) because each protocol decides the input size.
    """

    card: BackboneCard
    task: TaskSpec
    config: dict[str, Any]
    options: RunOptions
    work_dir: Path


@dataclass
class TaskOutcome:
    """What a task runner returns: nested metrics (see ``results.metric``) and the dataset identity."""

    metrics: dict[str, Any]
    dataset: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)


class RunFailed(RuntimeError):
    """The task raised; its failed record was written to ``record_path``."""

    def __init__(self, message: str, record_path: Path) -> None:
        super().__init__(message)
        self.record_path = record_path


@dataclass(frozen=True)
class TaskRunner:
    """The contract between a protocol's ``runner: "module:attr"`` string and code.

    Every task module ends with ``RUNNER = TaskRunner(run=run, preflight=preflight)`` and its protocol
    names it (``runner: "harmony_bench.tasks.imagenet.knn:RUNNER"``); :mod:`harmony_bench.protocols`
    checks that link when the protocol loads (without importing the task's heavy stack).

    Attributes:
        run: Does the work on the built context and returns the metrics and the dataset identity.
        preflight: Checks the user's inputs (e.g. the ``--data-root`` layout) before any work or record;
            its errors are usage errors (exit 2), not failed runs.  None when there is nothing to check.
    """

    run: Callable[[TaskContext], TaskOutcome]
    preflight: Callable[[TaskContext], None] | None = None

    def check(self, context: TaskContext) -> None:
        """Run the preflight check, if any."""
        if self.preflight is not None:
            self.preflight(context)


def load_task_runner(spec: TaskSpec) -> TaskRunner:
    """Import the protocol's runner (this is where heavy stacks get imported) and check its type."""
    runner = spec.load_runner()
    if not isinstance(runner, TaskRunner):
        raise TypeError(
            f"task {spec.name!r}: runner {spec.runner!r} is a {type(runner).__name__}, not a "
            "harmony_bench.runner.TaskRunner (end the module with RUNNER = TaskRunner(run=run, ...))"
        )
    return runner


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a rerun gives the same numbers."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def backbone_identity(card: BackboneCard, checkpoint: str | None) -> dict[str, Any]:
    """The record's ``backbone`` block: card, checkpoint source and its sha256 when it is a local file."""
    from harmony_bench.provenance import sha256_file

    source = checkpoint or card.checkpoint.get("source")
    local = Path(source) if source and Path(source).is_file() else None
    sha = sha256_file(local) if local else card.checkpoint.get("sha256")
    return {
        "name": card.name,
        "card": card.to_dict(),
        "checkpoint": {"source": source, "sha256": sha, "random_init": source is None},
    }


def resolve(backbone: str | ResolvedBackbone, options: RunOptions) -> tuple[ResolvedBackbone, RunOptions]:
    """The backbone a ``--backbone`` name means, and the options with the weights that name implies.

    A name that implies weights (a registered export, a pretraining folder) fills ``checkpoint`` unless
    the user gave one; a generated (``timm:`` ...) card's weights are fetched now, so a missing file
    stops the run before it starts.
    """
    from harmony_bench.models.names import resolve_backbone

    if not isinstance(backbone, ResolvedBackbone):
        backbone = resolve_backbone(
            backbone, options.checkpoint, trust_checkpoint=options.trust_checkpoint, fetch=True
        )
    if options.checkpoint is None and backbone.checkpoint is not None:
        options = dataclasses.replace(options, checkpoint=backbone.checkpoint)
    return backbone, options


def smoke_data(spec: TaskSpec, options: RunOptions) -> tuple[RunOptions, str | None]:
    """Without ``--data-root``, a smoke run reads the task's synthetic dataset (written once, cached).

    Returns the options with ``data_root`` set and a line saying so (None when nothing changed).
    """
    kind = spec.dataset.get("synth_kind")
    preset = options.preset or spec.default_preset
    smoke = preset == "smoke" or str(preset).startswith("smoke-")  # smoke-swin: a family's smoke preset
    if options.data_root is not None or not smoke or not kind:
        return options, None
    from harmony_bench.data.synth.cache import synthetic_data_root

    root, written = synthetic_data_root(str(kind))
    verb = "wrote" if written else "using"
    note = (
        f"no --data-root: the smoke preset runs on synthetic {kind} data ({verb} {root}; generated once and "
        "cached, never a benchmark number)"
    )
    return dataclasses.replace(options, data_root=root), note


def run(
    backbone: str | ResolvedBackbone,
    task: str,
    options: RunOptions,
    announce: Callable[[str], None] | None = None,
) -> Path:
    """Run ``task`` on ``backbone`` (any ``--backbone`` name, or a resolved one) and return the record's path.

    ``announce`` receives what the user should know before the work starts (the synthetic dataset a smoke
    run without ``--data-root`` reads); the log by default, stderr from the CLI.

    Raises:
        RunFailed: the task raised; the failed record is written first.
    """
    from harmony_bench.results import build_record, record_filename, write_record

    spec = get_task(task)
    resolved, options = resolve(backbone, options)
    card = resolved.card
    preset = spec.preset_for(options.preset, card.family)  # e.g. smoke -> smoke-swin (family_presets)
    if preset != (options.preset or spec.default_preset):
        log.info("preset %s of %s is %s for %s backbones", options.preset, spec.name, preset, card.family)
    config = spec.resolve_config(preset, options.overrides, "the overrides (--set, --cfg-options)")
    output = check_writable_dir(options.output or _default_output(), "--output")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", card.name).strip("-")
    work_dir = options.work_dir or output / "work" / f"{slug}__{spec.name}__seed{options.seed}"
    work_dir = check_writable_dir(work_dir, "--work-dir")
    check_checkpoint(card, options.checkpoint, options.trust_checkpoint)
    options, note = smoke_data(spec, options)  # after every check: writes the synthetic dataset once
    if note:
        (announce or (lambda text: log.info("%s", text)))(note)
    if preset != (options.preset or spec.default_preset):
        options = dataclasses.replace(options, preset=preset)  # the task sees the preset that runs
    context = TaskContext(card=card, task=spec, config=config, options=options, work_dir=work_dir)
    task_block = {
        "name": spec.name,
        "protocol_version": spec.protocol_version,
        "preset": preset,
        "config": config,
        "deviations": spec.deviations_for(preset),  # what this protocol does differently from its source
    }
    _preflight(spec, context)
    start, error, outcome = datetime.now(timezone.utc), None, None
    try:
        runner = load_task_runner(spec)
        configure_threads(max_workers(config))
        seed_everything(options.seed)
        outcome = runner.run(context)
    except Exception as exc:  # the record must say what failed, then we re-raise
        error = exc
    dataset = outcome.dataset if outcome else _dataset_guess(options, spec)
    record = build_record(
        backbone=backbone_identity(card, options.checkpoint),
        task=task_block,
        dataset=dataset,
        seed=options.seed,
        metrics=outcome.metrics if outcome else {},
        start=start,
        end=datetime.now(timezone.utc),
        error=error,
        output_dir=str(work_dir),
        artifacts=outcome.artifacts if outcome else None,
    )
    path = write_record(record, output) if _is_main_process() else output / record_filename(record)
    if error is not None:
        raise RunFailed(f"{spec.name} on {card.name} failed: {error}", path) from error
    return path


def _is_main_process() -> bool:
    """Whether this process writes the record: under torchrun only rank 0 does, so one run is one record."""
    return is_main_process()


def _preflight(spec: TaskSpec, context: TaskContext) -> None:
    """Call the runner's ``preflight(context)`` check (:class:`TaskRunner`) before anything runs.

    The check looks at the user's inputs, e.g. that ``--data-root`` holds the dataset in the expected
    layout.  Its errors
    propagate as they are, before any record is written: like a missing ``--checkpoint`` file, a run
    that never started is a usage error (the CLI exits 2 with the message), not a failed run.  A
    runner that cannot be imported is left to the run itself, which records the failure.
    """
    try:
        runner = load_task_runner(spec)
    except Exception:  # recorded as a failed run below
        return
    runner.check(context)


def _default_output() -> Path:
    from harmony_bench.paths import default_results_dir

    return default_results_dir()


def _dataset_guess(options: RunOptions, spec: TaskSpec) -> dict[str, Any]:
    """Dataset block for a run that failed before the task could describe its data."""
    from harmony_bench.data.identity import unread_dataset_block

    return unread_dataset_block(spec.dataset.get("name", spec.name), options.data_root)
