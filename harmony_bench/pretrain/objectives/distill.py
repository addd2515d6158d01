"""The self-distillation cross-entropy shared by iBOT, MaskCLIP's masked distillation and text distillation.

``H(t, s) = sum_k -softmax((t - c) / tau_t)_k * log_softmax(s / tau_s)_k``, with centre ``c`` updated
as an EMA of the teacher outputs' mean over the global batch (DINO/iBOT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harmony_bench.pretrain import distributed


def cross_entropy(
    teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor, t_temp: float, s_temp: float
) -> torch.Tensor:
    """Per-row ``H``: teacher sharpened and centred (no gradient), student at its temperature."""
    target = F.softmax((teacher.float() - center) / t_temp, dim=-1).detach()
    return torch.sum(-target * F.log_softmax(student.float() / s_temp, dim=-1), dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions per sample (iBOT: ``sum(l * m) / m.sum().clamp(min=1)``), then samples."""
    mask = mask.flatten(1).float()
    return (torch.sum(values.flatten(1) * mask, dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).mean()


@torch.no_grad()
def update_center(center: torch.Tensor, batch_mean: torch.Tensor, momentum: float) -> None:
    """``c <- m c + (1 - m) mean``, the mean taken over all ranks."""
    center.mul_(momentum).add_(distributed.mean_over_ranks(batch_mean.float()), alpha=1 - momentum)
