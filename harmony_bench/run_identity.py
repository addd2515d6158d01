"""Run identity: everything that can change a run's numbers, hashed to decide whether a resume is safe.

Every task that resumes from a work dir (ImageNet fine-tuning and the linear probe, ADE20K and COCO
through mmengine) keys its checkpoints by this identity: task, protocol version, the resolved config
(less ``checkpointing``, which only says what to do with an existing checkpoint), backbone and
checkpoint sha256, seed, world size, device type and dataset root.  A checkpoint is resumed only under
the same identity hash; one made under another identity is refused with the keys that differ
(:func:`describe_difference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.results.canonical import config_hash
from harmony_bench.runner import backbone_identity

if TYPE_CHECKING:
    from harmony_bench.runner import TaskContext

# Config blocks that never change the numbers (what to do with an existing checkpoint): not hashed.
CONTROL_KEYS = ("checkpointing",)


class CheckpointMismatchError(ValueError):
    """The work dir holds a checkpoint of a run with another identity (config, backbone, seed ...)."""


def run_identity(context: TaskContext, root: Path, world_size: int, device_type: str) -> dict[str, Any]:
    """Everything that can change the numbers of this run (hashed to decide whether to resume)."""
    backbone = backbone_identity(context.card, context.options.checkpoint)
    return {
        "task": context.task.name,
        "protocol_version": context.task.protocol_version,
        "config": {k: v for k, v in context.config.items() if k not in CONTROL_KEYS},
        "backbone": {"name": backbone["name"], "checkpoint": backbone["checkpoint"]},
        "seed": context.options.seed,
        "world_size": world_size,
        "device": device_type,
        "data_root": str(root),
    }


def identity_hash(identity: dict[str, Any]) -> str:
    """sha256 of the identity's canonical JSON (key order does not matter)."""
    return config_hash(identity)


def refuse_other_identity(
    stored: dict[str, Any], identity: dict[str, Any], work_dir: Path, what: str
) -> None:
    """Raise unless ``stored`` (a checkpoint's sidecar or payload) was made under this run's ``identity``.

    Raises:
        CheckpointMismatchError: naming ``what`` (e.g. "a fine-tuning checkpoint") and the keys that differ.
    """
    if stored["identity_hash"] == identity_hash(identity):
        return
    raise CheckpointMismatchError(
        f"the work dir {work_dir} holds {what} made under a different configuration "
        f"(identity hash {stored['identity_hash'][:12]} there, {identity_hash(identity)[:12]} here): "
        f"{describe_difference(stored['identity'], identity)}. Refusing to resume it or to overwrite "
        "it: pass another --work-dir (or --output), delete the checkpoint, or start over in this work "
        "dir with --set checkpointing.resume=false"
    )


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def describe_difference(stored: dict[str, Any], current: dict[str, Any], limit: int = 8) -> str:
    """``key: stored (checkpoint) vs current (this run)`` for the first ``limit`` differing keys."""
    old, new = _flatten(stored), _flatten(current)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))
    lines = [
        f"{k}: {old.get(k, '<absent>')!r} (checkpoint) vs {new.get(k, '<absent>')!r} (this run)" for k in keys
    ]
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more if lines else "(no key differs; the hash format changed)"
