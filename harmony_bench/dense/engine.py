"""The mmengine parts every dense task shares: launcher, AMP, overrides, resume, metrics capture.

A dense task builds its mmengine ``Config`` in one explicit function, then hands it to
:func:`train_and_evaluate`, which runs mmengine's ``Runner`` and returns the final validation
metrics.  Resume is mmengine's own (the ``last_checkpoint`` file in the work dir), guarded by a run
identity sidecar so that a checkpoint of a different configuration is never continued silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from harmony_bench import events
from harmony_bench.atomic import atomic_write_text
from harmony_bench.runtime import default_device_type, effective_amp, world_size

IDENTITY_FILE = "harmony-run-identity.json"


def launcher() -> str:
    """``pytorch`` under torchrun (``WORLD_SIZE`` > 1), else ``none``; Slurm jobs run torchrun per node."""
    return "pytorch" if world_size() > 1 else "none"


def apply_amp(cfg: Any, amp: str) -> str:
    """Switch the optim wrapper to mmengine's ``AmpOptimWrapper`` on CUDA; return the mode in effect.

    The training rule of :func:`harmony_bench.runtime.effective_amp`: autocast on CUDA only.
    """
    amp = effective_amp(default_device_type(), amp, training=True)
    if amp == "none":
        return "none"
    cfg.optim_wrapper.type = "AmpOptimWrapper"
    cfg.optim_wrapper.dtype = "bfloat16" if amp == "bf16" else "float16"
    return amp


def apply_cfg_options(cfg: Any, options: dict[str, Any]) -> None:
    """Merge dotted overrides (``model.decode_head.channels``, ``...pipeline.2.scale``) into ``cfg``.

    Every key must name a setting the config has (list indices included): mmengine would add a
    misspelt key silently and train with the real value unchanged.  A key written ``+a.b`` adds ``a.b``
    on purpose.

    Raises:
        ValueError: a key the config does not have, with the closest one it does.
    """
    if options:
        check_cfg_keys(cfg, options)
        plain = {key.lstrip("+"): _plain(value) for key, value in options.items()}
        cfg.merge_from_dict(plain)


def check_cfg_keys(cfg: Any, options: dict[str, Any]) -> None:
    """Refuse a ``cfg_options`` key (or a key inside a mapping value) that ``cfg`` does not have."""
    tree = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    for key, value in options.items():
        if key.startswith("+"):
            continue
        node: Any = tree
        parts = key.split(".")
        for depth, part in enumerate(parts):
            node = _child(node, part, ".".join(parts[:depth]), key)
        if isinstance(value, dict) and _same_module(node, value):
            _check_mapping(node, value, key)


def _child(node: Any, part: str, parent: str, key: str) -> Any:
    import difflib

    where = f"{parent}." if parent else ""
    if isinstance(node, (list, tuple)):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
        raise ValueError(
            f"--cfg-options {key}: {where}{part} is not an index of {parent} (a list of {len(node)}: "
            f"0..{len(node) - 1})"
        )
    if isinstance(node, dict) and part in node:
        return node[part]
    if not isinstance(node, dict):
        raise ValueError(
            f"--cfg-options {key}: {parent} is a {type(node).__name__} ({str(node)[:60]}), it has no {part!r}"
        )
    close = difflib.get_close_matches(part, [str(k) for k in node], n=1, cutoff=0.6)
    hint = f" (did you mean {where}{close[0]}?)" if close else ""
    raise ValueError(
        f"unknown --cfg-options key {key!r}: the mmengine config has no {where}{part}{hint}; "
        f"`harmony-bench protocol show TASK` prints the config (to add a key on purpose, write +{key})"
    )


def _same_module(node: Any, value: dict[str, Any]) -> bool:
    """A mapping value merges into the same module: its keys can be checked (not for a new ``type``)."""
    if not isinstance(node, dict) or value.get("_delete_"):
        return False
    return "type" not in value or value["type"] == node.get("type")


def _check_mapping(node: dict[str, Any], value: dict[str, Any], key: str) -> None:
    for name, inner in value.items():
        if name == "_delete_":
            continue
        child = _child(node, str(name), key, f"{key}.{name}")
        if isinstance(inner, dict) and _same_module(child, inner):
            _check_mapping(child, inner, f"{key}.{name}")


def _plain(value: Any) -> Any:
    """YAML lists → tuples where mmengine expects sizes; mappings stay mappings."""
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return tuple(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def guard_resume(work_dir: Path, identity: dict[str, Any], resume: bool) -> bool:
    """Whether to resume; refuse to continue a checkpoint written under another (or an unknown) run identity.

    Writes the identity sidecar for this run (after any refusal), so the next run can check it.  A run that
    does not resume first drops mmengine's ``last_checkpoint`` pointer: otherwise, if it stopped before its
    first save, the next (resuming) run would find this run's identity beside the old run's checkpoint and
    continue the wrong training.
    """
    from harmony_bench.run_identity import CheckpointMismatchError, describe_difference

    sidecar = work_dir / IDENTITY_FILE
    pointer = work_dir / "last_checkpoint"
    has_checkpoint = pointer.is_file()
    if resume and has_checkpoint and not sidecar.is_file():
        raise CheckpointMismatchError(
            f"the work dir {work_dir} holds checkpoints without {IDENTITY_FILE}, so nothing says which "
            "configuration wrote them. Pass another --work-dir, or start over with --no-resume"
        )
    if not resume and has_checkpoint:
        pointer.unlink()
    if resume and has_checkpoint:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        if stored != json.loads(json.dumps(identity)):
            raise CheckpointMismatchError(
                f"the work dir {work_dir} holds checkpoints of a run with another configuration: "
                f"{describe_difference(stored, identity)}. Pass another --work-dir, or start over with "
                "--no-resume"
            )
    atomic_write_text(sidecar, json.dumps(identity, indent=2, sort_keys=True))
    return resume and has_checkpoint


def resume_safe_globals() -> list[Any]:
    """What mmengine's own resume checkpoints pickle besides tensors, for ``torch.load(weights_only=True)``.

    torch >= 2.6 loads with ``weights_only=True`` by default, and an mmengine checkpoint also holds
    its message hub (``HistoryBuffer`` of NumPy arrays).  Allow-listing exactly these types keeps the
    restricted unpickler, instead of turning it off.
    """
    import builtins

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    multiarray = np._core.multiarray
    return [
        HistoryBuffer,
        np.dtype,
        np.ndarray,
        multiarray._reconstruct,
        multiarray.scalar,
        builtins.getattr,
        *dtypes,
    ]


def train_and_evaluate(cfg: Any) -> tuple[dict[str, float], Any, int]:
    """Train with mmengine's Runner, then validate unless the last iteration just did.

    Emits the ``train_iter`` event (:mod:`harmony_bench.events`) after every training iteration.

    Returns:
        ``(metrics, evaluator metric objects, iteration the run started from)``.
    """
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class _Capture(Hook):
        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.metrics: dict[str, float] | None = None
            self.at_iter = -1
            self.start_iter = 0

        def before_train(self, runner: Any) -> None:
            self.start_iter = runner.iter

        def after_train_iter(
            self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
        ) -> None:
            events.emit("train_iter", iteration=runner.iter, work_dir=runner.work_dir)

        def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
            self.metrics, self.at_iter = dict(metrics or {}), runner.iter

    from harmony_bench.dense.quiet import quiet_logger, silence_known_warnings

    silence_known_warnings()
    runner = Runner.from_cfg(cfg)
    quiet_logger(runner.logger)
    capture = _Capture()
    runner.register_hook(capture)
    with torch.serialization.safe_globals(resume_safe_globals()):
        runner.train()
    if capture.metrics is None or capture.at_iter != runner.iter:
        capture.metrics = dict(runner.val())
    return capture.metrics, runner.val_evaluator.metrics, capture.start_iter
