"""What every objective sees in one step: the batch, both towers, schedules, and shared forwards.

``StepContext`` memoises the forwards several objectives need (the teacher on
both global crops serves iBOT and Harmony's soft CLIP targets) and batches the
student forwards of one step into as few calls as possible: every global-crop
view the objectives declare (CLIP's plain crop 0, iBOT's two masked crops,
SimCLR's two plain crops) goes through the ViT as one batch, and the full and
masked captions through the text tower as one batch.  That batching and the
single backward are where the fused step saves work over the original loop,
which ran and back-propagated each objective separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import towers as T

# A student view of a global crop: ("plain" | "masked", crop index); "masked" has iBOT's [MASK] tokens.
View = tuple[str, int]
VIEW_ORDER: tuple[View, ...] = (("masked", 0), ("masked", 1), ("plain", 0), ("plain", 1))
TEXT_ORDER: tuple[str, ...] = ("full", "masked")  # captions as given, and with MLM's [MASK] ids


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
    # The student views this step's objectives declared (``Objective.image_views`` / ``text_views``): each
    # kind runs as one batched forward the first time any of them is asked for.
    image_views: tuple[View, ...] = ()
    text_views: tuple[str, ...] = ()
    # True when some objective reads the text teacher at every position of the full context (Harmony's
    # text-distillation centre): the teacher's one text forward then runs on the full context.
    teacher_text_context: bool = False
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The current epoch (temperature warm-ups are per epoch)."""
        return int(self.sched.get("epoch", 0))

    @property
    def batch_size(self) -> int:
        """Images (and captions) per rank in this step."""
        return int(self.batch["crops"][0].shape[0])

    def _memo(self, key: Any, fn: Any) -> Any:
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def _rows(self, stacked: torch.Tensor, planned: tuple[Any, ...], wanted: tuple[Any, ...]) -> torch.Tensor:
        """The blocks of ``stacked`` (one per planned view, B rows each) for ``wanted``, in that order."""
        b = self.batch_size
        idx = [planned.index(v) for v in wanted]
        if idx == list(range(idx[0], idx[0] + len(idx))):  # contiguous: a view, no copy
            return stacked[idx[0] * b : (idx[-1] + 1) * b]
        return torch.cat([stacked[i * b : (i + 1) * b] for i in idx])

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
            return self.teacher_globals()[: self.batch_size]

        def run() -> torch.Tensor:
            with torch.no_grad():
                return T.image_tokens(self.teacher.vit, self.batch["crops"][0])

        return self._memo("teacher_crop0", run)

    def student_views(self, *views: View) -> torch.Tensor:
        """Student tokens ``(len(views) * B, 1 + N, D)`` of global-crop views, stacked in the order asked.

        The views this step declared run as ONE forward (larger matrix products than one call per objective);
        a view nobody declared runs on its own.
        """
        planned = self.image_views if all(v in self.image_views for v in views) else tuple(views)
        tokens = self._memo(("student_views", planned), lambda: self._student_forward(planned))
        return self._rows(tokens, planned, views)

    def _student_forward(self, views: tuple[View, ...]) -> torch.Tensor:
        crops = self.batch["crops"]
        images = torch.cat([crops[c] for _, c in views]) if len(views) > 1 else crops[views[0][1]]
        mask = None
        if any(kind == "masked" for kind, _ in views):
            blocks = self.batch["block_masks"]
            mask = torch.cat(
                [blocks[:, c] if kind == "masked" else torch.zeros_like(blocks[:, c]) for kind, c in views]
            )
        return T.image_tokens(self.student.vit, images, mask, self.student.mask_token)

    def student_plain(self, crop: int) -> torch.Tensor:
        """Student tokens of one unmasked crop (CLIP uses crop 0, SimCLR crops 0 and 1)."""
        return self.student_views(("plain", crop))

    def eot(self) -> torch.Tensor:
        """EOT positions of the unmasked captions (pooling them avoids picking a [MASK] id)."""
        return self._memo("eot", lambda: T.eot_positions(self.batch["text"], self.eot_id))

    def _student_text(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        planned = self.text_views if kind in self.text_views else (kind,)

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            ids = [self.batch["text" if k == "full" else "text_masked"] for k in planned]
            return T.text_tokens(self.student.text, torch.cat(ids), self.eot().repeat(len(planned)))

        tokens, pooled = self._memo(("student_text", planned), run)
        return self._rows(tokens, planned, (kind,)), self._rows(pooled, planned, (kind,))

    def student_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Student text tower on the full captions: ``(tokens, pooled)``."""
        return self._student_text("full")

    def student_text_masked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Student text tower on the [MASK]ed captions (MLM and text distillation)."""
        return self._student_text("masked")

    def teacher_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """EMA text teacher on the full captions: ``(tokens (B, L, W) before ln_final, pooled)``."""
        tokens, pooled = self._teacher_text_run()
        return tokens[:, : self.batch["text"].shape[1]], pooled

    def teacher_text_full_context(self) -> torch.Tensor:
        """EMA text teacher tokens at every position of the full context ``(B, 77, W)``, padding included.

        Harmony's text-distillation centre averages the teacher over all 77 positions; the loader cuts the
        padding (``trim_text_padding``), so this forward restores it.  When an objective declared it
        (``teacher_text_context``), :meth:`teacher_text` is a slice of this one forward.
        """
        tokens, _ = self._teacher_text_run(full_context=True)
        return tokens

    def _teacher_text_run(self, full_context: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        full_context = full_context or self.teacher_text_context

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return T.text_tokens(self.teacher.text, self.batch["text"], self.eot(), full_context)

        return self._memo(("teacher_text", full_context), run)


class Objective(nn.Module):
    """Base class: a weight, optional EMA heads, and hooks the trainer calls."""

    name = "objective"
    # The student forwards this objective reads through the step context, so the context can batch them.
    image_views: tuple[View, ...] = ()
    text_views: tuple[str, ...] = ()
    # True when the objective reads the text teacher over the full context (see ``StepContext``).
    teacher_text_context: bool = False

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

    def image_student_heads(self) -> list[nn.Module]:
        """Heads the Harmony repo counts as part of its image ``student`` (gradient clipping covers them)."""
        return []

    def after_backward(self, epoch: int) -> None:
        """Gradient surgery before the optimizer step (iBOT freezes its last layer in epoch 0)."""

    def after_step(self) -> None:
        """Parameter surgery after the optimizer step (SLIP clamps its logit scale)."""
