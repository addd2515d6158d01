"""Per-iteration schedules as pure functions of the step, so a resumed run gets the same values.

DINO/iBOT/Harmony precompute arrays (``utils.cosine_scheduler``); the value at
step ``i`` of that array is what :func:`cosine` returns for ``i``.
"""

from __future__ import annotations

import math


def cosine(
    step: int, total: int, base: float, final: float, warmup: int = 0, warmup_start: float = 0.0
) -> float:
    """Linear warm-up from ``warmup_start`` over ``warmup`` steps, then cosine from ``base`` to ``final``.

    The warm-up is ``np.linspace(warmup_start, base, warmup)`` as in DINO (its last step already reaches
    ``base``).  Past ``total`` the value stays at ``final`` (Harmony's hard-label weight after its 10 epochs).
    """
    if step < warmup:
        return warmup_start + (base - warmup_start) * step / max(warmup - 1, 1)
    span = max(total - warmup, 1)
    t = min(step - warmup, span)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t / span))


def linear(step: int, total: int, base: float, final: float) -> float:
    """Linear from ``base`` to ``final`` over ``total`` steps, then constant."""
    if total <= 0:
        return final
    return base + (final - base) * min(step, total) / total


def epoch_warmup(epoch: int, warmup_epochs: int, start: float, end: float) -> float:
    """IBOT teacher temperature: ``np.linspace(start, end, warmup_epochs)[epoch]``, then ``end``."""
    if epoch >= warmup_epochs or warmup_epochs <= 1:
        return end if epoch >= warmup_epochs or warmup_epochs <= 0 else start
    return start + (end - start) * epoch / (warmup_epochs - 1)
