"""Text self-distillation: the student sees the [MASK]ed caption, the EMA teacher the full one.

Per-token iBOT-style loss on the masked positions: a 2-layer DINO head (out dim = out_dim / 4 = 2048),
centred and sharpened teacher (0.04 -> 0.07 warm-up), student temperature 0.1.  The centre is updated with
the mean teacher output over masked positions (padding would otherwise dominate a 77-token mean).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import schedules
from harmony_bench.pretrain.objectives import distill
from harmony_bench.pretrain.objectives.base import Objective, StepContext
from harmony_bench.pretrain.objectives.heads import DistillHead, teacher_copy


class TextDistObjective(Objective):
    """Masked caption tokens distilled from the teacher's full-caption tokens."""

    name = "text_dist"
    text_views = ("masked",)

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        width = int(cfg["model"]["text"]["width"])
        self.head = DistillHead(
            width, int(spec["out_dim"]), int(spec["hidden_dim"]), int(spec["bottleneck_dim"]), nlayers=2
        )
        self.teacher_head = teacher_copy(self.head)
        self.register_buffer("center", torch.zeros(1, 1, int(spec["out_dim"])))

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The head's EMA teacher moves with the text tower's."""
        return [(self.head, self.teacher_head)]

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked-token distillation; updates the centre from the teacher's masked-position outputs."""
        mask = ctx.batch["text_mask"]
        # Loss and centre read masked positions only: both heads run on those rows alone.
        student = self.head(distill.masked_rows(ctx.student_text_masked()[0], mask))
        with torch.no_grad():
            teacher = self.teacher_head(distill.masked_rows(ctx.teacher_text()[0], mask))
        temp = schedules.epoch_warmup(
            ctx.epoch,
            int(self.spec["warmup_teacher_temp_epochs"]),
            float(self.spec["warmup_teacher_temp"]),
            float(self.spec["teacher_temp"]),
        )
        s_temp = float(self.spec["student_temp"])
        values = distill.cross_entropy(teacher, student, self.center[0], temp, s_temp)
        loss = distill.masked_rows_mean(values, mask)
        distill.update_center(
            self.center, teacher.float().mean(0).view(1, 1, -1), float(self.spec["center_momentum"])
        )
        return loss, {"text_dist": loss.detach()}
