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


def masked_rows(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rows of ``tokens`` ``(B, N, D)`` at masked positions (``mask`` ``(B, ...)``, N cells): ``(M, D)``.

    Heads whose loss only reads masked positions run on these rows alone: iBOT's 8192-way head on every
    patch token would cost ~1/3 of a ViT-S/16 per token, and most of those rows never reach the loss.
    """
    return tokens[mask.flatten(1)]


def masked_rows_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_mean` from the masked rows' values alone (``values`` ``(M,)``, in ``mask`` order)."""
    flat = mask.flatten(1)
    counts = flat.sum(dim=-1)  # masked rows per sample, in the row-major order of ``tokens[mask]``
    # output_size is known: no second host sync on CUDA (the boolean indexing already did one)
    sample = torch.repeat_interleave(counts, output_size=values.shape[0])
    return (values / counts.clamp(min=1).to(values.dtype)[sample]).sum() / flat.shape[0]


@torch.no_grad()
def update_center(center: torch.Tensor, batch_mean: torch.Tensor, momentum: float) -> None:
    """``c <- m c + (1 - m) mean``, the mean taken over all ranks."""
    center.mul_(momentum).add_(distributed.mean_over_ranks(batch_mean.float()), alpha=1 - momentum)
