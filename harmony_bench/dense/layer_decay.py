"""Layer-wise lr decay for registry backbones inside mmseg/mmdet models.

mmseg's ``LayerDecayOptimizerConstructor`` only recognises its own BEiT/MAE/ConvNeXt classes and
their ``layers.N`` names; our backbone is a timm model under ``backbone.model``, with ``blocks.N``.
The rule is iBOT's/BEiT's: patch embed, position embedding, class token → layer 0, block i → i + 1,
everything else (final norm, neck, heads) → the top (scale 1); lr scale = decay ** (top − layer).
Tokens and pre-norm that timm adds (DINOv2 registers, CLIP's ``norm_pre``) sit before block 0: layer 0.
Swin's stages (``layers.N``) count as blocks (stage-wise decay, ``num_layers = 4``).

Weight decay is off for 1-D parameters and biases only, as the iBOT/BEiT/mmseg code runs: their extra
test ``name in ('pos_embed', 'cls_token')`` never matches a segmentor's ``backbone.pos_embed`` names,
so the position embedding and class token are decayed; we keep that to reproduce the protocol.
"""

from __future__ import annotations

import re
from typing import Any

from mmengine.optim import DefaultOptimWrapperConstructor

_BLOCK = re.compile(r"^backbone\.model\.(?:blocks|layers)\.(\d+)\.")
_STEM = tuple(
    f"backbone.model.{name}"
    for name in ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token", "norm_pre")
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
            no_decay = param.ndim == 1 or name.endswith(".bias")
            layer = layer_id(name, num_layers)
            if layer > num_layers and _BLOCK.match(name):
                raise ValueError(
                    f"{name} is in block {layer - 1} but paramwise_cfg.num_layers is {num_layers}: "
                    "set num_layers to the backbone's depth"
                )
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
