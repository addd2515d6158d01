"""CLIP contrastive loss over the global batch, plus Harmony's soft targets from the EMA teacher.

Hard loss (SLIP/Harmony ``CLIPLoss``): each rank's image embeddings against all
ranks' text embeddings (and vice versa), labels ``rank * B + i``, learnable
logit scale ``exp(s)`` with ``s`` initialised to ln(1/0.07).  Harmony never bounds ``s``
(``models/contrastive.py`` L78, ``losses/clip_loss.py``); SLIP clamps the parameter itself to [0, ln 100]
after every optimizer step (``main.py`` L314-L318): ``max_logit_scale`` set (the ``slip`` method) does that.
Soft loss (Harmony, ``losses/clip_loss.py``): targets ``softmax(sim_teacher / 0.1)`` from the EMA image
and text teachers, cross-entropy against the same student logits.  Total ``w * hard + (1 - w) * soft``
with ``w`` = ``sched['hard_weight']`` (cosine 1.0 -> 0.2 over 10 epochs in Harmony's code).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.pretrain import distributed
from harmony_bench.pretrain.objectives.base import Objective, StepContext


def contrastive_logits(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local-vs-global logits: ``(B, world*B)`` per image and per text, features L2-normalised first."""
    image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
    image_all, text_all = distributed.gather_with_grad(image), distributed.gather_with_grad(text)
    return scale * image @ text_all.t(), scale * text @ image_all.t()


def local_labels(batch: int, device: torch.device) -> torch.Tensor:
    """This rank's rows' positives in the gathered batch."""
    return batch * distributed.rank() + torch.arange(batch, device=device)


def soft_targets(
    image_t: torch.Tensor, text_t: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher similarity distributions ``softmax(sim / T)`` per image and per text (no gradient)."""
    image_t, text_t = F.normalize(image_t.float(), dim=-1), F.normalize(text_t.float(), dim=-1)
    image_all, text_all = distributed.gather_no_grad(image_t), distributed.gather_no_grad(text_t)
    return F.softmax(image_t @ text_all.t() / temperature, dim=1), F.softmax(
        text_t @ image_all.t() / temperature, dim=1
    )


class CLIPObjective(Objective):
    """Image crop 0 (global crop 1 in Harmony's numbering) against its caption."""

    name = "clip"
    image_views = (("plain", 0),)
    text_views = ("full",)

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        self.logit_scale = nn.Parameter(torch.tensor(float(spec["init_logit_scale"])))
        bound = spec["max_logit_scale"]
        self.max_logit_scale = None if bound is None else float(bound)
        self.soft = bool(spec["soft_targets"])
        self.temperature = float(spec["soft_temperature"])

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)``: the forward never clamps (Harmony and SLIP alike)."""
        return self.logit_scale.exp()

    @torch.no_grad()
    def after_step(self) -> None:
        """SLIP's ``logit_scale.data.clamp_(0, 4.6052)`` after the optimizer step, when a bound is set."""
        if self.max_logit_scale is not None:
            self.logit_scale.clamp_(0.0, self.max_logit_scale)

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``w * hard + (1 - w) * soft`` for this step's hard-label weight ``w``."""
        image = ctx.student.vit.forward_head(ctx.student_plain(0))
        text = ctx.student_text()[1]
        per_image, per_text = contrastive_logits(image, text, self.scale())
        labels = local_labels(image.shape[0], image.device)
        hard = (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
        w = float(ctx.sched.get("hard_weight", 1.0)) if self.soft else 1.0
        terms = {
            "clip_hard": hard.detach(),
            "logit_scale": self.scale().detach(),
            "hard_weight": torch.tensor(w),
        }
        loss = w * hard
        if self.soft and w < 1.0:
            with torch.no_grad():
                image_t = ctx.teacher.vit.forward_head(ctx.teacher_crop0())
                text_t = ctx.teacher_text()[1]
            target_i, target_t = soft_targets(image_t, text_t, self.temperature)
            soft = (F.cross_entropy(per_image, target_i) + F.cross_entropy(per_text, target_t)) / 2
            loss = loss + (1 - w) * soft
            terms["clip_soft"] = soft.detach()
        return loss, terms
