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


def teacher_temps(spec: dict[str, Any], epoch: int, patch_delay: int = 0) -> tuple[float, float]:
    """(cls, patch) teacher temperatures at ``epoch``.

    Both warm up linearly over ``warmup_teacher_temp_epochs`` (``np.linspace``, then constant).  The patch
    warm-up starts ``patch_delay`` epochs late (iBOT's ``mim_start_epoch`` = ``pred_start_epoch``, Harmony
    ``losses/ibot_loss.py`` L34-L43: ``warmup`` for the first ``mim_start_epoch`` epochs, then the linspace).
    """
    warm = int(spec["warmup_teacher_temp_epochs"])
    cls = schedules.epoch_warmup(epoch, warm, float(spec["warmup_teacher_temp"]), float(spec["teacher_temp"]))
    start, end = float(spec["warmup_teacher_patch_temp"]), float(spec["teacher_patch_temp"])
    patch = start if epoch < patch_delay else schedules.epoch_warmup(epoch - patch_delay, warm, start, end)
    return cls, patch


def cls_term(
    s_cls: list[torch.Tensor],
    t_cls: list[torch.Tensor],
    center: torch.Tensor,
    temp: float,
    student_temp: float,
) -> torch.Tensor:
    """Mean of ``H(t_q, s_v)`` over teacher global crops q and student crops v != q.

    Crop q of both lists is the same global crop.
    """
    total, n = 0.0, 0
    for q in range(len(t_cls)):
        for v in range(len(s_cls)):
            if v != q:
                total = total + distill.cross_entropy(t_cls[q], s_cls[v], center, temp, student_temp).mean()
                n += 1
    assert isinstance(total, torch.Tensor)
    return total / n


class IBOTObjective(Objective):
    """Multi-crop [CLS] distillation + masked image modelling with a shared head."""

    name = "ibot"
    image_views = (("masked", 0), ("masked", 1))

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

    def image_student_heads(self) -> list[nn.Module]:
        """The repo's student is ``MultiCropWrapper(image_encoder, ibot_head)``: the head is clipped too."""
        return [self.head]

    def after_backward(self, epoch: int) -> None:
        """DINO/iBOT: the last layer is frozen in the first epoch(s) to stabilise training."""
        if epoch < int(self.spec["freeze_last_layer_epochs"]):
            self.head.last_layer.weight.grad = None

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``λ1 * cls + λ2 * patch``; updates both centres from the teacher outputs.

        The student head runs once, on the [CLS] tokens of every crop plus the masked patch tokens only:
        the patch loss reads nothing else (unmasked rows would get zero gradient), so this equals the
        repo's head over all tokens at a fraction of its cost (Harmony masks ~15% of the patches on
        average).  The teacher head still sees every token: the patch centre is the mean over all of them.
        """
        crops, b = ctx.batch["crops"], ctx.batch_size
        g_mask = torch.cat([ctx.batch["block_masks"][:, 0], ctx.batch["block_masks"][:, 1]])  # (2B, h, w)
        s_global = ctx.student_views(("masked", 0), ("masked", 1))
        rows = [s_global[:, 0]]
        if len(crops) > 2:
            rows.append(T.image_tokens(ctx.student.vit, torch.cat(crops[2:]))[:, 0])
        rows.append(distill.masked_rows(s_global[:, 1:], g_mask))
        s_out = self.head(torch.cat(rows))
        n_cls = b * len(crops)
        with torch.no_grad():
            t_out = self.teacher_head(ctx.teacher_globals())
        temps = teacher_temps(self.spec, ctx.epoch, int(self.spec["pred_start_epoch"]))
        s_temp = float(self.spec["student_temp"])
        cls_loss = cls_term(
            list(s_out[:n_cls].chunk(len(crops))), list(t_out[:, 0].chunk(2)), self.center, temps[0], s_temp
        )
        t_patch = distill.masked_rows(t_out[:, 1:], g_mask)
        values = distill.cross_entropy(t_patch, s_out[n_cls:], self.center2[0], temps[1], s_temp)
        patch_loss = distill.masked_rows_mean(values, g_mask)  # mean over both crops' images
        m = float(self.spec["center_momentum"])
        distill.update_center(self.center, t_out[:, 0].mean(0, keepdim=True), m)
        distill.update_center(self.center2, t_out[:, 1:].mean(1).mean(0, keepdim=True).unsqueeze(0), m)
        loss = float(self.spec["lambda1"]) * cls_loss + float(self.spec["lambda2"]) * patch_loss
        return loss, {"ibot_cls": cls_loss.detach(), "ibot_patch": patch_loss.detach()}
