"""Text self-distillation: the student sees the [MASK]ed caption, the EMA teacher the full one.

Harmony's ``TextDistillationPath`` (``models/text_distillation.py``, ``losses/text_dist_loss.py``): a
2-layer DINO head (hidden 1024, ``models/heads/text_dist_head.py`` L60; out dim = out_dim / 4 = 2048) on
both towers' token features *before* ``ln_final``; per-token cross-entropy of the centred, sharpened
teacher (0.04 -> 0.07 warm-up) against the student at 0.1, averaged over each caption's masked tokens,
then over captions.

The centre (``center``):

- ``probs-all`` (default, the repo's ``update_center(teacher_output)``, ``losses/text_dist_loss.py``
  L43-L58): the EMA of the teacher's *softmax probabilities* ``softmax((t - c) / T)``, averaged over all 77
  positions (padding and unmasked tokens included).  That centre is a probability vector, tiny next to the
  logits it is subtracted from, so it barely centres; reproduced because the paper's numbers come from it.
- ``logits-masked`` (opt-in fix, recorded as a deviation): DINO/iBOT's rule, the EMA of the raw teacher
  outputs averaged over the masked tokens the loss reads.

The student head runs on the masked rows only.  ``probs-all`` needs the teacher head on every position of
the full 77-token context (the loader cuts the padding, so the teacher's text forward restores it); both
are no-grad, the teacher side only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.pretrain import schedules
from harmony_bench.pretrain.objectives import distill
from harmony_bench.pretrain.objectives.base import Objective, StepContext
from harmony_bench.pretrain.objectives.heads import DistillHead, teacher_copy

CENTERS = ("probs-all", "logits-masked")


class TextDistObjective(Objective):
    """Masked caption tokens distilled from the teacher's full-caption tokens."""

    name = "text_dist"
    text_views = ("masked",)

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        if spec["center"] not in CENTERS:
            raise ValueError(f"objectives.text_dist.center must be one of {CENTERS}, got {spec['center']!r}")
        self.center_rule = str(spec["center"])
        self.teacher_text_context = self.center_rule == "probs-all"
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
        """Masked-token distillation; updates the centre by the configured rule."""
        mask = ctx.batch["text_mask"]
        student = self.head(distill.masked_rows(ctx.student_text_masked()[0], mask))
        temp = schedules.epoch_warmup(
            ctx.epoch,
            int(self.spec["warmup_teacher_temp_epochs"]),
            float(self.spec["warmup_teacher_temp"]),
            float(self.spec["teacher_temp"]),
        )
        with torch.no_grad():
            if self.center_rule == "probs-all":
                every = self.teacher_head(ctx.teacher_text_full_context())  # (B, 77, K)
                teacher = distill.masked_rows(every[:, : mask.shape[1]], mask)
            else:
                teacher = self.teacher_head(distill.masked_rows(ctx.teacher_text()[0], mask))
        s_temp = float(self.spec["student_temp"])
        values = distill.cross_entropy(teacher, student, self.center[0], temp, s_temp)
        loss = distill.masked_rows_mean(values, mask)
        with torch.no_grad():
            if self.center_rule == "probs-all":
                probs = F.softmax((every.float() - self.center) / temp, dim=-1)
                batch_mean = probs.mean(1).mean(0)
            else:
                batch_mean = teacher.float().mean(0)
        distill.update_center(self.center, batch_mean.view(1, 1, -1), float(self.spec["center_momentum"]))
        return loss, {"text_dist": loss.detach()}
