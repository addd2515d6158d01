"""iBOT: self-distillation on the [CLS] token over multi-crop views and on masked patch tokens.

Student: both global crops with block-masked patches replaced by [MASK], plus the local crops; teacher
(EMA): both global crops unmasked.  One head, shared between [CLS] and patch tokens (README
``--shared_head True``, out dim 8192).  Loss (iBOT ``iBOTLoss``):

- cls: mean over (teacher global q, student crop v != q) of ``H(t_q, s_v)``;
- patch: mean over global q of the masked-position average of ``H(t_q, s_q)`` per image;
- total ``λ1·cls + λ2·patch`` (Harmony: 0.5 / 0.5).  Teacher temperatures warm up linearly per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import schedules
from harmony_bench.pretrain import towers as T
from harmony_bench.pretrain.objectives import distill
from harmony_bench.pretrain.objectives.base import Objective, StepContext
from harmony_bench.pretrain.objectives.heads import DistillHead, teacher_copy


def teacher_temps(spec: dict[str, Any], epoch: int) -> tuple[float, float]:
    """(cls, patch) teacher temperatures at ``epoch``."""
    warm = int(spec["warmup_teacher_temp_epochs"])
    return (
        schedules.epoch_warmup(epoch, warm, float(spec["warmup_teacher_temp"]), float(spec["teacher_temp"])),
        schedules.epoch_warmup(
            epoch, warm, float(spec["warmup_teacher_patch_temp"]), float(spec["teacher_patch_temp"])
        ),
    )


def ibot_terms(
    s_cls: list[torch.Tensor],
    s_patch: list[torch.Tensor],
    t_cls: list[torch.Tensor],
    t_patch: list[torch.Tensor],
    masks: list[torch.Tensor],
    centers: tuple[torch.Tensor, torch.Tensor],
    temps: tuple[float, float],
    student_temp: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cls loss, patch loss) from per-crop head outputs; crops ``0..len(t_cls)-1`` are the global ones."""
    patch_sum, cls_sum, n_cls = 0.0, 0.0, 0
    for q in range(len(t_cls)):
        values = distill.cross_entropy(t_patch[q], s_patch[q], centers[1], temps[1], student_temp)
        patch_sum = patch_sum + distill.masked_mean(values, masks[q])
        for v in range(len(s_cls)):
            if v != q:
                cls_sum = (
                    cls_sum
                    + distill.cross_entropy(t_cls[q], s_cls[v], centers[0], temps[0], student_temp).mean()
                )
                n_cls += 1
    return cls_sum / n_cls, patch_sum / len(t_cls)


class IBOTObjective(Objective):
    """Multi-crop [CLS] distillation + masked image modelling with a shared head."""

    name = "ibot"

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        if not spec["shared_head"] or int(spec["patch_out_dim"]) != int(spec["out_dim"]):
            raise ValueError(
                "ibot: only the shared head (out_dim == patch_out_dim, Harmony's README) is built"
            )
        dim = towers.vit.embed_dim
        self.head = DistillHead(
            dim, int(spec["out_dim"]), int(spec["hidden_dim"]), int(spec["bottleneck_dim"])
        )
        self.teacher_head = teacher_copy(self.head)
        self.register_buffer("center", torch.zeros(1, int(spec["out_dim"])))
        self.register_buffer("center2", torch.zeros(1, 1, int(spec["patch_out_dim"])))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The head's EMA teacher moves with the towers'."""
        return [(self.head, self.teacher_head)]

    def after_backward(self, epoch: int) -> None:
        """DINO/iBOT: the last layer is frozen in the first epoch(s) to stabilise training."""
        if epoch < int(self.spec["freeze_last_layer_epochs"]):
            self.head.last_layer.weight.grad = None

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``λ1 * cls + λ2 * patch``; updates both centres from the teacher outputs."""
        crops, masks = ctx.batch["crops"], ctx.batch["block_masks"]
        student = ctx.student
        g_mask = torch.cat([masks[:, 0], masks[:, 1]])
        s_global = self.head(T.image_tokens(student.vit, ctx.globals_cat(), g_mask, student.mask_token))
        s_cls = list(s_global[:, 0].chunk(2))
        if len(crops) > 2:
            s_local = self.head(T.image_tokens(student.vit, torch.cat(crops[2:]))[:, 0])
            s_cls += list(s_local.chunk(len(crops) - 2))
        with torch.no_grad():
            t_out = self.teacher_head(ctx.teacher_globals())
        t_cls, t_patch = list(t_out[:, 0].chunk(2)), list(t_out[:, 1:].chunk(2))
        temps = teacher_temps(self.spec, ctx.epoch)
        cls_loss, patch_loss = ibot_terms(
            s_cls,
            list(s_global[:, 1:].chunk(2)),
            t_cls,
            t_patch,
            [masks[:, 0], masks[:, 1]],
            (self.center, self.center2),
            temps,
            float(self.spec["student_temp"]),
        )
        m = float(self.spec["center_momentum"])
        distill.update_center(self.center, t_out[:, 0].mean(0, keepdim=True), m)
        distill.update_center(self.center2, t_out[:, 1:].mean(1).mean(0, keepdim=True).unsqueeze(0), m)
        loss = float(self.spec["lambda1"]) * cls_loss + float(self.spec["lambda2"]) * patch_loss
        return loss, {"ibot_cls": cls_loss.detach(), "ibot_patch": patch_loss.detach()}
