"""DINO and DINOv2 checkpoints.

DINO's ``*_pretrain.pth`` files are bare backbone state dicts in timm names;
``*_full_checkpoint.pth`` has the same teacher/student layout as iBOT's.
DINOv2's ``dinov2_vit*14[_reg4]_pretrain.pth`` are bare state dicts that go
through timm's own ``_convert_dinov2`` (``mask_token`` dropped, register tokens
folded into timm's ``no_embed_class`` layout, SwiGLU renames).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import ConvertResult, apply_rules
from harmony_bench.models.converters.ibot import convert_teacher_student

DINO_DROPS = [(r"head\..+", "DINO projection head (pre-training only)")]


def convert_dino(state_dict: Mapping[str, Any]) -> ConvertResult:
    """A bare DINO backbone state dict (``dino_*_pretrain.pth``)."""
    out, dropped, _ = apply_rules(state_dict, [], DINO_DROPS)
    return out, dropped


def convert_dino_full_checkpoint(state_dict: Mapping[str, Any], *, branch: str = "teacher") -> ConvertResult:
    """``dino_*_full_checkpoint.pth``: the EMA ``teacher`` backbone by default."""
    return convert_teacher_student(
        state_dict,
        branch=branch,
        converter="dino-full-checkpoint",
        head_reason="DINO projection head (pre-training only)",
    )


def convert_dinov2(state_dict: Mapping[str, Any]) -> ConvertResult:
    """A bare DINOv2 backbone state dict, via timm's ``_convert_dinov2``."""
    from timm.models.vision_transformer import _convert_dinov2

    state = dict(state_dict)
    dropped = (
        {"mask_token": "DINOv2 masked-image-modeling token (pre-training only)"}
        if "mask_token" in state
        else {}
    )
    return _convert_dinov2(state, None), dropped
