"""Checkpoints already in timm's layout, including harmony-bench's own exports.

``harmony-bench backbones convert`` writes a safetensors file with timm key
names and the text tower under ``text.``; this converter reads it (and any
plain timm ``state_dict``) back.  Optional container unwrapping and prefix
stripping are declared by the card (``checkpoint.options``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import ConvertResult, strip_prefix, unwrap


def convert_timm(
    state_dict: Mapping[str, Any], *, container: str | None = None, prefix: str = ""
) -> ConvertResult:
    """Identity, after the declared ``container`` unwrap and ``prefix`` strip."""
    dropped: dict[str, str] = {}
    if container:
        state_dict, dropped = unwrap(state_dict, tuple(container.split(".")), "timm")
    return strip_prefix(state_dict, prefix, "timm"), dropped
