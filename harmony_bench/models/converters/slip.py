"""SLIP checkpoints (facebookresearch/SLIP): CLIP, SimCLR and SLIP models saved by ``main.py``.

Container ``{"epoch", "state_dict", "optimizer", "scaler", "best_acc1", "args"}``;
every key in ``state_dict`` is DDP-wrapped (``module.``).  The image tower is a
timm 0.5 ViT under ``visual.`` with timm's names; ``image_projection``
(width x embed, used as ``x @ P``) becomes timm's ``head``; the text tower uses
OpenAI CLIP names.  The SimCLR/SLIP image MLP is pre-training only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import (
    CLIP_TEXT_RULES,
    REASON_TEMPERATURE,
    ConvertResult,
    apply_rules,
    projection_to_head,
    strip_prefix,
    unwrap,
)

SLIP_RULES = [(r"visual\.(.+)", r"\1"), *CLIP_TEXT_RULES]
SLIP_DROPS = [
    (r"logit_scale", REASON_TEMPERATURE),
    (r"image_mlp\..+", "SimCLR projection MLP (pre-training only)"),
    (r"visual\.head\..+", "timm classifier head of the image tower (unused, num_classes=0 in SLIP)"),
]


def convert_slip(state_dict: Mapping[str, Any]) -> ConvertResult:
    """A SLIP-repo checkpoint (``{slip,clip}_{small,base,large}_*.pt``)."""
    state, dropped = unwrap(state_dict, ("state_dict",), "slip")
    state = strip_prefix(state, "module.", "slip")
    projection = state.pop("image_projection", None)
    out, more, _ = apply_rules(state, SLIP_RULES, SLIP_DROPS)
    dropped.update(more)
    if projection is not None:
        out.update(projection_to_head(projection))
    return out, dropped
