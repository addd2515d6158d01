"""``PretrainModel``: student and EMA-teacher towers plus the objectives of one method.

``forward`` runs every objective on one batch and returns the weighted sum of
their losses, so the trainer does ONE backward pass (the Harmony repo did a
backward per objective; gradients are the same, see the tests).  The step
context batches the student forwards the objectives share (see
:class:`~harmony_bench.pretrain.objectives.base.StepContext`).  The EMA
update moves the teacher towers and every objective's teacher head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain.config import uses_text
from harmony_bench.pretrain.objectives import build_objective
from harmony_bench.pretrain.objectives.base import TEXT_ORDER, VIEW_ORDER, StepContext
from harmony_bench.pretrain.objectives.heads import teacher_copy
from harmony_bench.pretrain.towers import build_towers

EOT_ID = 49407  # CLIP BPE end-of-text


class PretrainModel(nn.Module):
    """All trainable and EMA state of a run (what DDP wraps and checkpoints hold)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        names = list(cfg["objective_names"])
        self.names = names
        # Seeded as a whole: heads and decoders too, so two runs with one config start identical (in one
        # process as in many), whatever the caller did with the global RNG before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg["seed"]))
            self.student = build_towers(
                cfg,
                text=uses_text(cfg),
                mask_token="ibot" in names,
                projection="clip" in names,
            )
            self.teacher = teacher_copy(self.student)
            self.objectives = nn.ModuleDict(
                {name: build_objective(name, cfg, self.student) for name in names}
            )

    def train(self, mode: bool = True) -> PretrainModel:
        """Train mode for the students; the EMA teachers always stay in eval mode (no drop path)."""
        super().train(mode)
        self.teacher.eval()  # the teacher never uses drop path
        for objective in self.objectives.values():
            for _, teacher in objective.ema_pairs():
                teacher.eval()
        return self

    def context(
        self, batch: dict[str, Any], sched: dict[str, float], objectives: list[str] | None = None
    ) -> StepContext:
        """A fresh step context for ``objectives`` (default: all); shared forwards run at most once in it."""
        names = self.names if objectives is None else objectives
        chosen = [self.objectives[n] for n in names]
        image_views = {v for o in chosen for v in o.image_views}
        text_views = {v for o in chosen for v in o.text_views}
        return StepContext(
            batch,
            self.student,
            self.teacher,
            sched,
            EOT_ID,
            teacher_both_globals="ibot" in names,
            teacher_text_context=any(o.teacher_text_context for o in chosen),
            image_views=tuple(v for v in VIEW_ORDER if v in image_views),
            text_views=tuple(v for v in TEXT_ORDER if v in text_views),
        )

    def forward(
        self, batch: dict[str, Any], sched: dict[str, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(sum_i weight_i * loss_i, logged terms)`` over all objectives."""
        ctx = self.context(batch, sched)
        total: torch.Tensor | float = 0.0
        terms: dict[str, torch.Tensor] = {}
        for name, objective in self.objectives.items():
            loss, parts = objective(ctx)
            total = total + objective.weight * loss
            terms[f"loss_{name}"] = loss.detach()
            terms.update(parts)
        assert isinstance(total, torch.Tensor)
        terms["loss"] = total.detach()
        return total, terms

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """Every (student, teacher) pair the EMA update moves."""
        pairs: list[tuple[nn.Module, nn.Module]] = [(self.student, self.teacher)]
        for objective in self.objectives.values():
            pairs += objective.ema_pairs()
        return pairs

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """``teacher <- m * teacher + (1 - m) * student`` for every pair, parameter by parameter."""
        for student, teacher in self.ema_pairs():
            s_params = [p.detach() for p in student.parameters()]
            t_params = list(teacher.parameters())
            torch._foreach_mul_(t_params, momentum)
            torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)

    def clipped_parameters(self, scope: str) -> list[nn.Parameter]:
        """The parameters gradient clipping covers (``optim.clip_scope``).

        ``image-student`` is the Harmony repo's: ``utils.clip_gradients(student, ...)`` where ``student`` is
        its image encoder (with the CLIP projection and [MASK] embedding) wrapped with the iBOT head;
        ``all`` is every trainable parameter.
        """
        if scope == "all":
            return [p for p in self.parameters() if p.requires_grad]
        if scope != "image-student":
            raise ValueError(f"optim.clip_scope must be image-student or all, got {scope!r}")
        modules: list[nn.Module] = [self.student.vit]
        for objective in self.objectives.values():
            modules += objective.image_student_heads()
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if self.student.mask_token is not None:
            params.append(self.student.mask_token)
        return params

    def after_backward(self, epoch: int) -> None:
        """Each objective's gradient surgery before clipping and the optimizer step."""
        for objective in self.objectives.values():
            objective.after_backward(epoch)

    def after_step(self) -> None:
        """Each objective's parameter surgery after the optimizer step (before the EMA update)."""
        for objective in self.objectives.values():
            objective.after_step()
