"""What every objective sees in one step: the batch, both towers, schedules, and shared forwards.

``StepContext`` memoises the forwards several objectives need (the teacher on
both global crops serves iBOT and Harmony's soft CLIP targets; the student
text tower on masked captions serves MLM and text distillation).  That sharing
plus the single backward is where the fused step saves work over the original
loop, which ran and back-propagated each objective separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import towers as T


@dataclass
class StepContext:
    """One training step's inputs; ``sched`` holds its schedule values (``hard_weight``, ``epoch``...)."""

    batch: dict[str, Any]
    student: nn.Module
    teacher: nn.Module
    sched: dict[str, float]
    eot_id: int = 49407
    # True when some objective needs the teacher on both global crops (iBOT): the crop-0 teacher forward of
    # CLIP's soft targets and MaskCLIP is then a slice of that one instead of a second forward.
    teacher_both_globals: bool = False
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The current epoch (temperature warm-ups are per epoch)."""
        return int(self.sched.get("epoch", 0))

    def _memo(self, key: Any, fn: Any) -> Any:
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def globals_cat(self) -> torch.Tensor:
        """Both global crops stacked: ``(2B, 3, H, W)``."""
        return self._memo("globals", lambda: torch.cat(self.batch["crops"][:2]))

    def teacher_globals(self) -> torch.Tensor:
        """EMA teacher tokens for both global crops, unmasked: ``(2B, 1 + N, D)``."""

        def run() -> torch.Tensor:
            with torch.no_grad():
                return T.image_tokens(self.teacher.vit, self.globals_cat())

        return self._memo("teacher_globals", run)

    def teacher_crop0(self) -> torch.Tensor:
        """EMA teacher tokens of global crop 0 only (soft CLIP targets, MaskCLIP): ``(B, 1 + N, D)``."""
        if self.teacher_both_globals or "teacher_globals" in self.cache:
            return self.teacher_globals()[: self.batch["crops"][0].shape[0]]

        def run() -> torch.Tensor:
            with torch.no_grad():
                return T.image_tokens(self.teacher.vit, self.batch["crops"][0])

        return self._memo("teacher_crop0", run)

    def student_plain(self, crop: int) -> torch.Tensor:
        """Student tokens of one unmasked crop (CLIP uses crop 0, SimCLR crops 0 and 1)."""
        return self._memo(
            ("student_plain", crop), lambda: T.image_tokens(self.student.vit, self.batch["crops"][crop])
        )

    def eot(self) -> torch.Tensor:
        """EOT positions of the unmasked captions (pooling them avoids picking a [MASK] id)."""
        return self._memo("eot", lambda: T.eot_positions(self.batch["text"], self.eot_id))

    def student_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Student text tower on the full captions: ``(tokens, pooled)``."""
        return self._memo(
            "student_text", lambda: T.text_tokens(self.student.text, self.batch["text"], self.eot())
        )

    def student_text_masked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Student text tower on the [MASK]ed captions (MLM and text distillation)."""
        return self._memo(
            "student_text_masked",
            lambda: T.text_tokens(self.student.text, self.batch["text_masked"], self.eot()),
        )

    def teacher_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """EMA text teacher on the full captions."""

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return T.text_tokens(self.teacher.text, self.batch["text"], self.eot())

        return self._memo("teacher_text", run)


class Objective(nn.Module):
    """Base class: a weight, optional EMA heads, and hooks the trainer calls."""

    name = "objective"

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__()
        self.weight = float(spec["weight"])
        self.spec = spec

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        """``(loss, logged terms)`` for this step; subclasses implement it."""
        raise NotImplementedError

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(student, teacher) modules the EMA update moves, besides the towers."""
        return []

    def after_backward(self, epoch: int) -> None:
        """Gradient surgery before the optimizer step (iBOT freezes its last layer in epoch 0)."""
