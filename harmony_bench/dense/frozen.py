"""A frozen registry backbone and an optimizer that only sees what trains (frozen-backbone dense protocols).

iBOT's/Harmony's linear segmentation configs freeze the whole ViT (``frozen_stages`` = depth): every
parameter stops taking gradients and every block is put back in eval mode whenever the model is put in
train mode, so drop path and dropout never act (bytedance/ibot@da316d8
evaluation/semantic_segmentation/mmcv_custom/register_backbone.py:L73-L98).  Only the head learns.

:class:`FrozenRegistryBackbone` does the same and goes one step further for speed: its features are
computed under ``torch.no_grad``, so the autograd graph starts at the head and the backward pass never
enters the backbone (upstream builds no backbone graph either, as nothing in it requires a gradient;
``no_grad`` also skips recording the forward).  :class:`TrainableOnlyOptimWrapperConstructor` hands the
optimizer the parameters that require gradients and nothing else, so no optimizer state (or weight decay)
is ever kept for the frozen weights.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.optim import DefaultOptimWrapperConstructor

from harmony_bench.dense.adapter import RegistryBackbone


class FrozenRegistryBackbone(RegistryBackbone):
    """:class:`RegistryBackbone` with every weight frozen: no gradients, always eval mode, no autograd graph.

    Takes the same arguments; ``drop_path_rate`` has no effect (eval mode), as upstream.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenRegistryBackbone:
        """Stay in eval mode whatever the segmentor asks (upstream's ``_freeze_stages`` in ``train``)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The block maps, computed without recording anything for backward."""
        with torch.no_grad():
            return super().forward(x)


class TrainableOnlyOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The optimizer over ``requires_grad`` parameters only (one group); ``paramwise_cfg`` is refused.

    mmengine's default constructor passes ``model.parameters()``, frozen ones included: they would sit in
    the optimizer's groups (without gradients, so untouched, but listed).  Here they are not there at all.
    """

    def __call__(self, model: torch.nn.Module) -> Any:
        """The optim wrapper (``OptimWrapper``, or ``AmpOptimWrapper`` with AMP) around the optimizer."""
        from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

        if self.paramwise_cfg:
            raise ValueError(
                "TrainableOnlyOptimWrapperConstructor takes no paramwise_cfg: the frozen-backbone protocols "
                "train one head with one lr and weight decay"
            )
        module = model.module if hasattr(model, "module") else model
        trainable = [param for param in module.parameters() if param.requires_grad]
        if not trainable:
            raise ValueError("no parameter of the model requires a gradient: nothing to train")
        optimizer = OPTIMIZERS.build({**self.optimizer_cfg, "params": trainable})
        wrapper_cfg = {"type": "OptimWrapper", **self.optim_wrapper_cfg}
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args={"optimizer": optimizer})
