"""CLIP checkpoints in the OpenAI layout: OpenAI's releases (TorchScript or plain) and open_clip's files.

The image tower goes through timm's own ``_convert_openai_clip`` (``visual.proj``
becomes ``head.weight``, transposed, with a zero bias); the text tower keeps
its OpenAI names, which open_clip's ``TextTransformer`` shares, under ``text.``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import (
    CLIP_TEXT_RULES,
    REASON_TEMPERATURE,
    ConvertResult,
    apply_rules,
    strip_prefix,
    take_prefix,
    unwrap,
)

TORCHSCRIPT_ATTRIBUTES = [
    (r"input_resolution|context_length|vocab_size", "TorchScript model attributes (metadata, not weights)")
]
CLIP_DROPS = [
    (r"logit_scale", REASON_TEMPERATURE),
    (r"logit_bias", "sigmoid-loss bias; not used by embeddings"),
]


def _convert_clip_layout(state: Mapping[str, Any], extra_drops: list[tuple[str, str]]) -> ConvertResult:
    from timm.models.vision_transformer import _convert_openai_clip

    visual, rest = take_prefix(state, "visual.")
    out = _convert_openai_clip({f"visual.{k}": v for k, v in visual.items()}, None, prefix="visual.")
    text, dropped, _ = apply_rules(rest, CLIP_TEXT_RULES, CLIP_DROPS + extra_drops)
    out.update(text)
    return out, dropped


def convert_openai_clip(state_dict: Mapping[str, Any]) -> ConvertResult:
    """A plain OpenAI-layout CLIP state dict (``visual.*`` + text tower at the top level)."""
    return _convert_clip_layout(state_dict, [])


def convert_openai_clip_torchscript(state_dict: Mapping[str, Any]) -> ConvertResult:
    """The ``state_dict()`` of OpenAI's TorchScript archives; also drops their metadata attributes."""
    return _convert_clip_layout(state_dict, TORCHSCRIPT_ATTRIBUTES)


def convert_open_clip(
    state_dict: Mapping[str, Any], *, container: str | None = None, prefix: str = ""
) -> ConvertResult:
    """An open_clip checkpoint: a bare state dict (hub files), or a training checkpoint.

    Training checkpoints (``open_clip_train`` ``epoch_N.pt``) are ``{"state_dict": {"module.visual..."}}``:
    declare ``container: state_dict`` and ``prefix: "module."`` in the card's ``checkpoint.options``.
    """
    dropped: dict[str, str] = {}
    if container:
        state_dict, dropped = unwrap(state_dict, (container,), "open-clip")
    out, more = _convert_clip_layout(strip_prefix(state_dict, prefix, "open-clip"), [])
    dropped.update(more)
    return out, dropped
