"""Swin Transformer checkpoints in Microsoft's release layout (``{"model": {...}}``).

Differences from timm's ``SwinTransformer``: the patch-merging layer is stored
at the end of stage *i* (``layers.i.downsample``) where timm keeps it at the
start of stage *i + 1*; ``relative_position_index`` and ``attn_mask`` are
stored buffers that timm recomputes; the ImageNet classifier is ``head``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import ConvertResult, apply_rules, unwrap

SWIN_DROPS = [
    (r".*relative_position_index", "buffer recomputed by timm"),
    (r".*attn_mask", "buffer recomputed by timm"),
    (r"head\..+", "ImageNet classifier head (backbone evaluation uses no head)"),
]


def _shift_downsample(key: str) -> str:
    return re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)


def convert_swin(state_dict: Mapping[str, Any]) -> ConvertResult:
    """Microsoft's ``swin_*.pth``: unwrap ``model``, move patch merging to the next stage, drop buffers."""
    state, dropped = unwrap(state_dict, ("model",), "swin")
    kept, more, _ = apply_rules(state, [], SWIN_DROPS)
    dropped.update(more)
    return {_shift_downsample(k): v for k, v in kept.items()}, dropped
