"""MaskCLIP's masked self-distillation (Dong et al. 2023), Harmony's version (``models/maskclip.py``).

The student encodes the visible 25% of global crop 1's patches; a 1-block decoder (width D, no input
projection and no predictor) fills in [MASK] tokens and returns [CLS] + every patch; the EMA teacher encodes
the full crop.  ``MaskeDistLoss`` (``losses/mask_self_dist.py``): DINO cross-entropy on the masked patches,
centring, temperature warm-up, plus (``cls: true``, the repo's ``--with_cls``) the same on the *decoder's*
[CLS] output.  With ``head: true`` (``--with_head``) both sides go through an iBOT head (8192, shared)
first; without it the loss reads the D-dim tokens themselves.  ``main_maskclip.py`` defaults both flags to
False (L123-L124), and so do we.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import towers as T
from harmony_bench.pretrain.objectives import distill
from harmony_bench.pretrain.objectives.base import Objective, StepContext
from harmony_bench.pretrain.objectives.heads import DistillHead, teacher_copy
from harmony_bench.pretrain.objectives.ibot import teacher_temps
from harmony_bench.pretrain.objectives.mae import MAEDecoder, split_permutation


class MaskDistObjective(Objective):
    """Masked token prediction against EMA teacher tokens."""

    name = "mask_dist"

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        dim = towers.vit.embed_dim
        patch = T.patch_size(towers.vit)
        grid = int(cfg["crops"]["global_size"]) // patch
        self.decoder = MAEDecoder(
            dim,
            dim,
            int(spec["decoder_depth"]),
            int(spec["decoder_heads"]),
            grid,
            patch,
            out_dim=None,
            embed=False,
            pos_embed=str(spec["decoder_pos_embed"]),
        )
        self.with_cls = bool(spec["cls"])
        out = dim
        self.head: nn.Module | None = None
        self.teacher_head: nn.Module | None = None
        if spec["head"]:
            out = int(spec["out_dim"])
            self.head = DistillHead(dim, out, int(spec["hidden_dim"]), int(spec["bottleneck_dim"]))
            self.teacher_head = teacher_copy(self.head)
        self.register_buffer("center", torch.zeros(1, out))
        self.register_buffer("center2", torch.zeros(1, 1, out))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The head's EMA teacher moves with the towers'."""
        return [(self.head, self.teacher_head)] if self.head is not None else []

    def image_student_heads(self) -> list[nn.Module]:
        """With ``--with_head`` the repo's student is ``HEAD_WRAPPER(image_model, head)``: clipped too."""
        return [self.head] if self.head is not None else []

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked-patch (+ decoder-[CLS]) distillation; updates both centres from the teacher outputs."""
        images = ctx.batch["crops"][0]
        keep, restore, mask = split_permutation(ctx.batch["perms"][:, 0], float(self.spec["mask_ratio"]))
        student = self.decoder(T.visible_tokens(ctx.student.vit, images, keep), restore)  # (B, 1 + N, D)
        teacher = ctx.teacher_crop0()
        if self.head is not None:
            student = self.head(student)
            with torch.no_grad():
                teacher = self.teacher_head(teacher)
        t_cls, t_patch = teacher_temps(self.spec, ctx.epoch)
        s_temp = float(self.spec["student_temp"])
        patch = distill.masked_mean(
            distill.cross_entropy(teacher[:, 1:], student[:, 1:], self.center2, t_patch, s_temp), mask
        )
        terms = {"mask_dist_patch": patch.detach()}
        loss = patch
        if self.with_cls:
            cls = distill.cross_entropy(teacher[:, 0], student[:, 0], self.center, t_cls, s_temp).mean()
            loss = loss + cls
            terms["mask_dist_cls"] = cls.detach()
        m = float(self.spec["center_momentum"])
        distill.update_center(self.center, teacher[:, 0].mean(0, keepdim=True), m)
        distill.update_center(self.center2, teacher[:, 1:].mean(1).mean(0, keepdim=True).unsqueeze(0), m)
        return loss, terms
