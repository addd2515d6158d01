"""MaskCLIP's masked self-distillation (Dong et al. 2023), Harmony's version (``models/maskclip.py``).

The student encodes the visible 25% of global crop 1's patches; a 1-block decoder (width D) fills in [MASK]
tokens; a DINO head on every output token is distilled from the EMA teacher's head on the full crop
(``MaskeDistLoss``: [CLS] + masked-patch cross-entropy, centring, temperature warm-up, weights 1 / 1).
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
            dim, dim, int(spec["decoder_depth"]), int(spec["decoder_heads"]), grid, patch, out_dim=dim
        )
        self.head = DistillHead(
            dim, int(spec["out_dim"]), int(spec["hidden_dim"]), int(spec["bottleneck_dim"])
        )
        self.teacher_head = teacher_copy(self.head)
        self.register_buffer("center", torch.zeros(1, int(spec["out_dim"])))
        self.register_buffer("center2", torch.zeros(1, 1, int(spec["out_dim"])))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The head's EMA teacher moves with the towers'."""
        return [(self.head, self.teacher_head)]

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """[CLS] + masked-patch distillation; updates both centres from the teacher outputs."""
        images = ctx.batch["crops"][0]
        keep, restore, mask = split_permutation(ctx.batch["perms"][:, 0], float(self.spec["mask_ratio"]))
        latent = T.visible_tokens(ctx.student.vit, images, keep)
        decoded = self.decoder(latent, restore)  # (B, N, D) patch predictions
        student = self.head(torch.cat([latent[:, :1], decoded], dim=1))
        with torch.no_grad():
            teacher = self.teacher_head(ctx.teacher_crop0())
        t_cls, t_patch = teacher_temps(self.spec, ctx.epoch)
        s_temp = float(self.spec["student_temp"])
        patch = distill.masked_mean(
            distill.cross_entropy(teacher[:, 1:], student[:, 1:], self.center2, t_patch, s_temp), mask
        )
        cls = distill.cross_entropy(teacher[:, 0], student[:, 0], self.center, t_cls, s_temp).mean()
        m = float(self.spec["center_momentum"])
        distill.update_center(self.center, teacher[:, 0].mean(0, keepdim=True), m)
        distill.update_center(self.center2, teacher[:, 1:].mean(1).mean(0, keepdim=True).unsqueeze(0), m)
        return patch + cls, {"mask_dist_patch": patch.detach(), "mask_dist_cls": cls.detach()}
