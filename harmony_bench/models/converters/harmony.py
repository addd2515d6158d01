"""Harmony-repo checkpoints (MohammedSB/Harmony): Harmony and its MaskCLIP re-implementation.

Each epoch writes ``main_vit_checkpoint.pth`` (the EMA teacher ViT, a bare
state dict in timm names plus ``contrastive_projection``, width x 512, used as
``cls @ P``), ``main_text_checkpoint.pth`` (the text encoder: ``backbone.resblocks.*``,
``text_embedding``, ``text_positional_embedding``, ``text_norm``,
``text_projection``) and a full ``checkpoint.pth`` whose ``model`` entry is the
whole training module, where the same weights appear under several prefixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import (
    ConvertResult,
    apply_rules,
    projection_to_head,
    take_prefix,
    unwrap,
)

HARMONY_TEXT_RULES = [
    (r"text_embedding\.weight", "text.token_embedding.weight"),
    (r"text_positional_embedding", "text.positional_embedding"),
    (r"backbone\.(resblocks\..+)", r"text.transformer.\1"),
    (r"text_norm\.(weight|bias)", r"text.ln_final.\1"),
    (r"text_projection", "text.text_projection"),
]
VIT_DROPS = [(r"masked_embed", "masked-image-modeling token (pre-training only)")]
REASON_OTHER_MODULES = "other training modules (student, heads, decoders, shared duplicates)"


def convert_harmony_main_vit(state_dict: Mapping[str, Any]) -> ConvertResult:
    """``main_vit_checkpoint.pth``: the EMA teacher ViT; ``contrastive_projection`` becomes ``head``."""
    state = dict(state_dict)
    projection = state.pop("contrastive_projection", None)
    out, dropped, _ = apply_rules(state, [], VIT_DROPS)
    if projection is not None:
        out.update(projection_to_head(projection))
    return out, dropped


def convert_harmony_main_text(state_dict: Mapping[str, Any]) -> ConvertResult:
    """``main_text_checkpoint.pth``: Harmony's ``TextEncoder`` state dict, renamed onto open_clip's."""
    out, dropped, _ = apply_rules(state_dict, HARMONY_TEXT_RULES)
    return out, dropped


def convert_harmony_full_checkpoint(
    state_dict: Mapping[str, Any],
    *,
    vision_prefix: str = "teacher.backbone.",
    text_prefix: str | None = "text_teacher.backbone.",
) -> ConvertResult:
    """The full ``checkpoint.pth``: picks the weights the repo itself exports as main_vit / main_text.

    The defaults match Harmony's README configuration (iBOT objective and text self-distillation on:
    ``teacher.backbone.*`` and ``text_teacher.backbone.*``).  MaskCLIP's checkpoints keep them under
    ``teacher.`` and ``text_student.``; its cards pass those prefixes as ``checkpoint.options``.
    """
    model, dropped = unwrap(state_dict, ("model",), "harmony-full-checkpoint")
    vision, rest = take_prefix(model, vision_prefix)
    if not vision:
        raise ValueError(f"harmony-full-checkpoint: no keys under {vision_prefix!r} in checkpoint['model']")
    out, more = convert_harmony_main_vit(vision)
    dropped.update({f"model.{vision_prefix}{k}": r for k, r in more.items()})
    if text_prefix:
        text, rest = take_prefix(rest, text_prefix)
        if not text:
            raise ValueError(f"harmony-full-checkpoint: no keys under {text_prefix!r} in checkpoint['model']")
        text_out, more = convert_harmony_main_text(text)
        out.update(text_out)
        dropped.update({f"model.{text_prefix}{k}": r for k, r in more.items()})
    dropped.update({f"model.{k}": REASON_OTHER_MODULES for k in rest})
    return out, dropped
