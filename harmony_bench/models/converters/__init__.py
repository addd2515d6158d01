"""Checkpoint converters: one pure function per checkpoint *source format*, named by the cards.

A converter takes the object read from the checkpoint file and returns
``(state_dict, dropped)``: the weights under timm's key names (text tower under
``text.``, in open_clip ``TextTransformer`` names) and every entry it left out
on purpose with the reason.  Unwrapping containers (``state_dict``, ``model``,
``teacher``, ``module.`` prefixes) is part of each converter.  Nothing guesses
a checkpoint's family from its keys: the card names the converter.  Entries
are lazy, so ``import harmony_bench`` does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harmony_bench.registry import Registry

_PKG = "harmony_bench.models.converters"

CONVERTERS: Registry[Callable[..., tuple[dict[str, Any], dict[str, str]]]] = Registry("checkpoint converter")
for _name, _target in {
    "openai-clip": "clip:convert_openai_clip",
    "openai-clip-torchscript": "clip:convert_openai_clip_torchscript",
    "open-clip": "clip:convert_open_clip",
    "slip": "slip:convert_slip",
    "ibot-teacher-backbone": "ibot:convert_ibot_teacher_backbone",
    "ibot-full-checkpoint": "ibot:convert_ibot_full_checkpoint",
    "mae": "mae:convert_mae",
    "mae-finetuned": "mae:convert_mae_finetuned",
    "dino": "dino:convert_dino",
    "dino-full-checkpoint": "dino:convert_dino_full_checkpoint",
    "dinov2": "dino:convert_dinov2",
    "harmony-main-vit": "harmony:convert_harmony_main_vit",
    "harmony-main-text": "harmony:convert_harmony_main_text",
    "harmony-full-checkpoint": "harmony:convert_harmony_full_checkpoint",
    "timm": "timm_native:convert_timm",
    "timm-pretrained": "timm_native:convert_timm_pretrained",
    "swin": "swin:convert_swin",
}.items():
    _module, _, _attr = _target.partition(":")
    CONVERTERS.register(_name, f"{_PKG}.{_module}:{_attr}")


def convert(
    name: str, checkpoint: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the converter ``name`` (with the card's ``checkpoint.options``) on a loaded checkpoint.

    Every value it returns must be a tensor: anything else is a container the converter did not unwrap,
    which means the file is not in the format the card declares.
    """
    import torch

    from harmony_bench.models.checkpoint_io import CheckpointError

    state, dropped = CONVERTERS.get(name)(checkpoint, **dict(options or {}))
    others = sorted(k for k, v in state.items() if not torch.is_tensor(v))
    if others:
        raise CheckpointError(
            f"converter {name!r} left non-tensor entries {others[:5]}: the file holds containers this format "
            "does not have (wrong card, or declare checkpoint.options such as container)"
        )
    return state, dropped
