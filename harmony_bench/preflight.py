"""Checks every run makes before any work: where it writes, and whether ``--checkpoint`` can be a checkpoint.

A run that trains for an hour and then cannot write its record, or that reads a file of random bytes
as weights, has wasted the hour or, worse, ends with a number that means nothing.  These checks are
cheap (no data is read, no model is built) and run before the task's own ``preflight``; their errors
are usage errors (the CLI exits 2 and no record is written), naming the flag, the path and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from harmony_bench.cards import BackboneCard


def check_writable_dir(path: Path, flag: str) -> Path:
    """``path`` is a directory this process can write, or can be created as one.

    Nothing is created here: the first existing ancestor must be a directory (not a file) that this
    user may write into.

    Args:
        path: The directory a run will write to.
        flag: The option that named it (``--output``, ``--work-dir``), for the message.

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        NotADirectoryError: ``path`` or one of its parents is a file.
        PermissionError: the directory (or the ancestor it would be created in) is not writable.
    """
    path = Path(path).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        if probe.is_symlink():  # a dangling link: creating the directory would fail
            raise NotADirectoryError(
                f"{flag} {path}: {probe} is a broken symbolic link; pass another directory"
            )
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise NotADirectoryError(
            f"{flag} {path} {where}, not a directory; pass a directory (it is created if missing)"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f" (it would be created in {probe})"
        raise PermissionError(
            f"{flag} {path}: not writable by this user{where}; pass a directory you can write"
        )
    return path


def check_checkpoint(card: BackboneCard, checkpoint: str | None, trust: bool = False) -> None:
    """``--checkpoint`` fits the card and is a checkpoint file at all (its first bytes; nothing is unpickled).

    A ``torch.save`` archive that would need classes outside the allow-list is refused here too (its
    pickle is scanned, not run), unless ``trust``.

    Raises:
        ValueError: the card cannot load a checkpoint (a random-init test card has no converter), or the
            file is not a checkpoint (empty, text, random bytes, a truncated archive, a foreign pickle).
        UntrustedCheckpointError: the archive needs full unpickling and ``trust`` is off.
    """
    if checkpoint is None:
        return
    if not card.checkpoint.get("converter"):
        raise ValueError(
            f"--checkpoint: backbone {card.name!r} is a random-init test card without a converter, so it "
            "cannot load a checkpoint; pick the card of the checkpoint's family (`harmony-bench backbones "
            "inspect FILE` lists the cards that load it cleanly)"
        )
    from harmony_bench.models.checkpoint_io import (
        TORCHSCRIPT_FORMAT,
        CheckpointError,
        is_remote,
        refuse_unsafe_globals,
        sniff_checkpoint,
    )

    if is_remote(checkpoint):
        return
    fmt = card.checkpoint.get("format")
    try:
        kind = sniff_checkpoint(Path(checkpoint).expanduser(), fmt if fmt == "safetensors" else None)
    except CheckpointError as exc:
        raise CheckpointError(f"--checkpoint {exc}") from None
    if kind == "torch-zip" and not trust:
        refuse_unsafe_globals(Path(checkpoint).expanduser())
    if (kind == TORCHSCRIPT_FORMAT) != (fmt == TORCHSCRIPT_FORMAT):
        if kind == TORCHSCRIPT_FORMAT:
            raise ValueError(
                f"--checkpoint {checkpoint} is a TorchScript archive but card {card.name!r} reads {fmt!r} "
                "files; use a card whose checkpoint format is 'torchscript' (e.g. clip-vit-b16-openai)"
            )
        raise ValueError(
            f"--checkpoint {checkpoint} is not a TorchScript archive, but card {card.name!r} reads "
            "TorchScript; use the card of the file's format (`harmony-bench backbones inspect FILE`)"
        )


def check_text_tower_file(card: BackboneCard, checkpoint: str | None, task: str) -> None:
    """Refuse ``--checkpoint`` on a card whose text tower lives in a second file that ``run`` cannot take.

    Such a card (``harmony-vit-b16-cc3m``: the repo's ``main_vit_checkpoint.pth`` plus
    ``main_text_checkpoint.pth``) builds no text tower from one file, so a text task would fail only after
    the model has loaded.
    """
    spec = card.checkpoint
    if spec.get("text_converter") and not spec.get("text_source") and checkpoint:
        raise ValueError(
            f"{task} needs {card.name}'s text tower, which this card reads from a second file (the Harmony "
            "repo's main_text_checkpoint.pth) that `run` does not take; use a card whose one file holds both "
            "towers: the '-full' card with the repo's checkpoint.pth, or a `harmony-bench pretrain` export "
            "(`harmony-bench backbones convert CARD --checkpoint main_vit_checkpoint.pth --text-checkpoint "
            "main_text_checkpoint.pth --out both.safetensors` writes one for a '-export' card)"
        )
