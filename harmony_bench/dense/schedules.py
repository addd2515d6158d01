"""mmcv 1.x's ``lr_config = dict(policy='poly', warmup='linear', ...)`` as one mmengine parameter scheduler.

The iBOT/Harmony ADE20K configs (mmseg 0.x on mmcv 1.x) set the learning rate before every iteration to
the poly curve over the WHOLE run, multiplied during the warm-up by the linear warm-up factor
(open-mmlab/mmcv@4c01b02, v1.7.2, mmcv/runner/hooks/lr_updater.py: ``PolyLrUpdaterHook.get_lr`` L244-L252,
``get_warmup_lr`` L87-L96, ``before_train_iter`` L140-L150)::

    lr(i) = (base - min_lr) * (1 - i / max_iters) ** power + min_lr          # every iteration i
    lr(i) *= 1 - (1 - i / warmup_iters) * (1 - warmup_ratio)                  # i < warmup_iters

mmengine's chained ``LinearLR`` + ``PolyLR`` cannot say this: ``PolyLR`` reaches zero one step early
(its horizon is ``end - begin - 1``), a ``PolyLR`` that starts after the warm-up spans fewer iterations,
and chaining multiplies rounding.  :class:`MMCV1PolyLR` computes the closed form from each param
group's initial lr (the layer-decayed lr), so the curve is the formula at every iteration.
"""

from __future__ import annotations

from typing import Any

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler


class MMCV1PolyParamScheduler(_ParamScheduler):
    """Poly decay over ``end`` iterations with mmcv 1.x's linear warm-up multiplied in (closed form).

    Args:
        optimizer: The wrapped optimizer.
        param_name: ``lr``.
        power: Poly power (mmcv ``power``).
        min_lr: Final value (mmcv ``min_lr``).
        warmup_iters: Warm-up length in iterations (mmcv ``warmup_iters``; 0: none).
        warmup_ratio: Warm-up start factor (mmcv ``warmup_ratio``).
        begin: Must be 0: mmcv's curve is indexed by the runner's iteration.
        end: The run's length in iterations (mmcv's ``runner.max_iters``), the poly horizon.
        by_epoch: Must be False (iteration-based, as the ADE20K configs).
    """

    def __init__(
        self,
        optimizer: Any,
        param_name: str,
        power: float = 1.0,
        min_lr: float = 0.0,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        begin: int = 0,
        end: int = 0,
        last_step: int = -1,
        by_epoch: bool = False,
        verbose: bool = False,
    ) -> None:
        if by_epoch or begin != 0 or end <= 0:
            raise ValueError(
                "MMCV1PolyLR is iteration-based over the whole run: by_epoch=False, begin=0, end=max_iters"
            )
        if warmup_iters and not 0 < warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in (0, 1], got {warmup_ratio}")
        self.power, self.min_lr = float(power), float(min_lr)
        self.warmup_iters, self.warmup_ratio = int(warmup_iters), float(warmup_ratio)
        self.max_iters = int(end)
        super().__init__(optimizer, param_name, begin, end, last_step, by_epoch, verbose)

    def factor(self, iteration: int) -> tuple[float, float]:
        """``(poly coefficient, warm-up multiplier)`` at ``iteration``."""
        coeff = (1 - iteration / self.max_iters) ** self.power
        if self.warmup_iters and iteration < self.warmup_iters:
            return coeff, 1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio)
        return coeff, 1.0

    def _get_value(self) -> list[float]:
        coeff, warm = self.factor(self.last_step)
        return [((base - self.min_lr) * coeff + self.min_lr) * warm for base in self.base_values]


class MMCV1PolyLR(LRSchedulerMixin, MMCV1PolyParamScheduler):
    """:class:`MMCV1PolyParamScheduler` on the learning rate (``type="MMCV1PolyLR"`` in configs)."""
