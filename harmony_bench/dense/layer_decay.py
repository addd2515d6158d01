"""Layer-wise lr decay for registry backbones inside mmseg/mmdet models.

mmseg's ``LayerDecayOptimizerConstructor`` only recognises its own BEiT/MAE/ConvNeXt classes and
their ``layers.N`` names; our backbone is a timm model under ``backbone.model``, with ``blocks.N``.
The rule is iBOT's/BEiT's: patch embed, position embedding, class token → layer 0, block i → i + 1,
everything else (final norm, neck, heads) → the top (scale 1); lr scale = decay ** (top − layer).
No weight decay on 1-D parameters (norms, biases), the position embedding and the class token.
"""

from __future__ import annotations

import re
from typing import Any

from mmengine.optim import DefaultOptimWrapperConstructor

_BLOCK = re.compile(r"^backbone\.model\.(?:blocks|layers)\.(\d+)\.")
_STEM = ("backbone.model.patch_embed", "backbone.model.pos_embed", "backbone.model.cls_token")
_NO_DECAY_NAMES = (
    "pos_embed",
    "cls_token",
    "reg_token",
    "absolute_pos_embed",
    "relative_position_bias_table",
)


def layer_id(name: str, num_layers: int) -> int:
    """The layer a parameter belongs to: 0 = stem, i + 1 = block i, ``num_layers + 1`` = the rest."""
    if name.startswith(_STEM):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


class TimmLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg = dict(num_layers=12, layer_decay_rate=0.65)``; param groups named by layer."""

    def add_params(self, params: list[dict[str, Any]], module: Any, **kwargs: Any) -> None:
        """One param group per (layer, decay / no decay), with the layer's lr scale."""
        num_layers = int(self.paramwise_cfg["num_layers"])
        decay_rate = float(self.paramwise_cfg["layer_decay_rate"])
        groups: dict[str, dict[str, Any]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim == 1 or name.endswith(_NO_DECAY_NAMES)
            layer = layer_id(name, num_layers)
            key = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
            if key not in groups:
                scale = decay_rate ** (num_layers + 1 - layer)
                groups[key] = {
                    "params": [],
                    "param_names": [],
                    "lr": self.base_lr * scale,
                    "weight_decay": 0.0 if no_decay else self.base_wd,
                    "lr_scale": scale,
                    "group_name": key,
                }
            groups[key]["params"].append(param)
            groups[key]["param_names"].append(name)
        params.extend(groups[key] for key in sorted(groups))
