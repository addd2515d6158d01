"""Loss modules, one per file; ``build_objective(name, cfg, towers)`` makes one by name.

Each returns ``(loss, terms)``: ``loss`` is the objective's own combination (e.g. iBOT's
λ1·cls + λ2·patch), which the model multiplies by ``objectives.<name>.weight``; ``terms`` are the
detached parts that are logged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

_MODULES = {
    "clip": "harmony_bench.pretrain.objectives.clip:CLIPObjective",
    "ibot": "harmony_bench.pretrain.objectives.ibot:IBOTObjective",
    "mae": "harmony_bench.pretrain.objectives.mae:MAEObjective",
    "mlm": "harmony_bench.pretrain.objectives.mlm:MLMObjective",
    "text_dist": "harmony_bench.pretrain.objectives.text_dist:TextDistObjective",
    "simclr": "harmony_bench.pretrain.objectives.simclr:SimCLRObjective",
    "mask_dist": "harmony_bench.pretrain.objectives.mask_dist:MaskDistObjective",
}


def build_objective(name: str, cfg: dict[str, Any], towers: nn.Module) -> nn.Module:
    """The objective ``name`` configured by ``cfg['objectives'][name]`` for these student towers."""
    from harmony_bench.registry import import_object

    if name not in _MODULES:
        raise ValueError(f"unknown objective {name!r}; available: {sorted(_MODULES)}")
    cls = import_object(_MODULES[name])
    return cls(cfg, cfg["objectives"][name], towers)  # type: ignore[operator]
