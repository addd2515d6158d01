"""Checkpoints of ``imagenet-finetune``: run identity, atomic epoch checkpoints, resume checks, RNG state.

A fine-tuning run writes ``<work_dir>/finetune-checkpoint.pt`` after every epoch (model, optimizer,
scheduler, grad scaler, completed epochs, optimizer updates, per-epoch history and RNG states) and a
small ``finetune-checkpoint.json`` beside it (identity, its hash, epoch), each written atomically
(:mod:`harmony_bench.atomic`): a crash never leaves a torn file.

A checkpoint is resumed only under the same run identity hash (:mod:`harmony_bench.run_identity`, shared
with the linear probe, ADE20K and COCO); one made under another identity is refused with the keys that
differ.

Exact resume.  Every epoch starts by re-seeding Python, NumPy, torch and the data-loader generator
from ``(seed, epoch, rank)`` (:func:`seed_epoch`), and the sampler is ``DistributedSampler`` with
``set_epoch``; so an epoch's shuffling, augmentations (RandAugment, random erasing, mixup/cutmix),
drop-path masks and loader-worker seeds depend only on the seed, the epoch and the rank, never on
what ran before.  With the model, optimizer, scheduler and scaler restored, a resumed run repeats
the uninterrupted one bit for bit on CPU (and on GPU with ``deterministic: true``).  The RNG states
at the end of the epoch are saved and restored as well, so that anything drawing random numbers
between epochs continues where it was.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.atomic import atomic_write, atomic_write_text
from harmony_bench.run_identity import refuse_other_identity

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)

CHECKPOINT_NAME = "finetune-checkpoint.pt"
SIDECAR_NAME = "finetune-checkpoint.json"
CHECKPOINT_FORMAT = 1


def checkpoint_paths(work_dir: Path) -> tuple[Path, Path]:
    """``(checkpoint .pt, sidecar .json)`` in ``work_dir``."""
    return work_dir / CHECKPOINT_NAME, work_dir / SIDECAR_NAME


def check_resumable(work_dir: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """The sidecar of a checkpoint this run may resume from, None to start fresh, or refuse.

    Args:
        work_dir: The run's work dir.
        identity: This run's :func:`run_identity`.
        resume: ``checkpointing.resume`` of the config; False starts fresh whatever is there (the old
            checkpoint is replaced at the end of the first epoch).

    Raises:
        CheckpointMismatchError: A checkpoint of another run identity is in ``work_dir``.
    """
    pt_path, json_path = checkpoint_paths(work_dir)
    if not pt_path.is_file():
        return None
    if not resume:
        log.warning(
            "checkpointing.resume is false: ignoring %s, it is replaced after the first epoch", pt_path
        )
        return None
    if json_path.is_file():
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    else:  # crashed between the two writes: the .pt is authoritative
        payload = load_checkpoint(pt_path)
        sidecar = {
            "identity_hash": payload["identity_hash"],
            "identity": payload["identity"],
            "epoch": payload["epoch"],
        }
    refuse_other_identity(sidecar, identity, work_dir, "a fine-tuning checkpoint")
    return sidecar


# --------------------------------------------------------------------------- RNG


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 32-bit seed derived from ``(seed, epoch, rank)`` with NumPy's ``SeedSequence``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_epoch(seed: int, epoch: int, rank: int, generator: torch.Generator) -> int:
    """Re-seed Python, NumPy, torch (all devices) and the loader's ``generator`` for one epoch."""
    import numpy as np
    import torch

    value = epoch_seed(seed, epoch, rank)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    generator.manual_seed(value)
    return value


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU and CUDA) and the loader generator, as plain data."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
        "loader": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    import numpy as np
    import torch

    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- files


def save_checkpoint(work_dir: Path, payload: dict[str, Any]) -> Path:
    """Write the epoch checkpoint and then its sidecar, each atomically; returns the .pt path.

    ``payload`` must hold ``identity``, ``identity_hash`` and ``epoch`` besides the training state.
    """
    import torch

    pt_path, json_path = checkpoint_paths(work_dir)
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    atomic_write(pt_path, lambda handle: torch.save(payload, handle))
    sidecar = {key: payload[key] for key in ("format", "identity_hash", "epoch", "identity")}
    text = json.dumps(sidecar, indent=1, sort_keys=True, default=str) + "\n"
    atomic_write_text(json_path, text)
    return pt_path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an imagenet-finetune checkpoint of format {CHECKPOINT_FORMAT}")
    return payload
