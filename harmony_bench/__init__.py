"""harmony-bench: one evaluation suite for pretrained vision backbones.

``load_backbone`` and ``list_backbones`` are imported lazily (on first
attribute access), so ``import harmony_bench`` does not import torch, timm or
the OpenMMLab stack.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_backbone": "harmony_bench.models.backbone",
    "list_backbones": "harmony_bench.models.backbone",
    "Backbone": "harmony_bench.models.backbone",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'harmony_bench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
