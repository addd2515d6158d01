"""Backbones: build a card's timm architecture and load its released checkpoint into it exactly.

- ``converters/``: one pure function per checkpoint source format (rename tables);
- ``checkpoint_io``: safe reading (weights-only, allow-listed globals), cached verified downloads;
- ``build``: the timm image model and open_clip text tower a card describes;
- ``loading``: placing converted weights, resizing position embeddings, failing on gaps;
- ``backbone``: ``load_backbone`` and the ``Backbone`` object tasks use.

Attributes are imported lazily so that importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Backbone": "harmony_bench.models.backbone",
    "load_backbone": "harmony_bench.models.backbone",
    "list_backbones": "harmony_bench.models.backbone",
    "LoadReport": "harmony_bench.models.report",
    "IncompleteLoadError": "harmony_bench.models.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
