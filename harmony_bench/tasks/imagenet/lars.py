"""LARS as MAE's linear probe uses it (``facebookresearch/mae@efb2a80 util/lars.py``, MoCo v3's LARS).

Neither torch nor timm ships this variant: timm's ``Lars`` adapts only when the weight decay is non-zero
(or ``always_adapt``), adapts biases too and starts its momentum buffer at the first update, so with
MAE's weight decay 0 it would be plain SGD.  The rule is restated here:

for every parameter ``p`` with gradient ``g``:

- if ``p.ndim > 1`` (weights, not biases or norm parameters): ``d = g + wd * p``; when both ``|p|`` and
  ``|d|`` are positive, ``d = d * trust * |p| / |d|`` (the trust ratio; otherwise ``d`` is unchanged);
- else ``d = g`` (no weight decay, no adaptation);
- momentum buffer ``mu = momentum * mu + d`` (starting at 0), then ``p = p - lr * mu``.

Norms are the L2 norms of the whole tensor.  ``tests/test_imagenet_linear_engine.py`` checks the update
against this rule written out step by step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with momentum; no scaling or weight decay for ``ndim <= 1``."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 (torch.optim.Optimizer.step)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad
                if param.ndim > 1:
                    update = update.add(param, alpha=group["weight_decay"])
                    param_norm = torch.norm(param)
                    update_norm = torch.norm(update)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(
                        param_norm > 0.0,
                        torch.where(
                            update_norm > 0, group["trust_coefficient"] * param_norm / update_norm, one
                        ),
                        one,
                    )
                    update = update.mul(trust)
                state = self.state[param]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(param)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(update)
                param.add_(mu, alpha=-group["lr"])
        return loss
