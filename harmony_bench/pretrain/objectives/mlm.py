"""Text MLM: predict the [MASK]ed caption tokens from the student text tower's token features.

Harmony's ``TextDecoder`` (``models/text_decoder.py``): a small causal transformer (4 layers, width of the
text tower, CLIP's residual blocks with QuickGELU, ``models/transformer.py`` L18-L20 and L31) on the student's
features of the masked caption *before* the text tower's ``ln_final`` (``models/harmony.py`` L133-L138), then
LayerNorm + Linear to the vocabulary (49408 BPE + [MASK]); cross-entropy on the masked positions only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.pretrain.objectives.base import Objective, StepContext


class TextDecoder(nn.Module):
    """Causal transformer + LayerNorm + vocabulary projection."""

    def __init__(self, width: int, layers: int, heads: int, vocab: int, context: int) -> None:
        from open_clip.transformer import QuickGELU, Transformer

        super().__init__()
        self.transformer = Transformer(width, layers, heads, act_layer=QuickGELU)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab)
        mask = torch.full((context, context), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits ``(B, L, V)``, or ``(M, V)`` for the ``M`` positions where ``mask`` is set.

        The causal blocks run over every position either way; only the vocabulary projection (width x
        49409, most of this objective's cost) is restricted to the masked positions the loss reads.
        """
        n = tokens.shape[1]
        x = self.transformer(tokens, attn_mask=self.attn_mask[:n, :n].to(tokens.dtype))
        if mask is not None:
            x = x[mask]
        return self.out(self.norm(x))


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions (``logits`` ``(M, V)``, ``targets`` ``(M,)``).

    A batch without a single masked token (possible with Bernoulli masking, if improbable beyond a few
    captions) gives 0 with a zero gradient: the repo would get NaN from ``cross_entropy`` with every label
    ignored and stop the run.
    """
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets)


class MLMObjective(Objective):
    """Masked language modelling on the captions."""

    name = "mlm"
    text_views = ("masked",)

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        text = cfg["model"]["text"]
        self.decoder = TextDecoder(
            int(text["width"]),
            int(spec["decoder_layers"]),
            int(text["heads"]),
            int(text["vocab_size"]),
            int(text["context_length"]),
        )

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the decoder's predictions at the [MASK]ed caption positions."""
        mask = ctx.batch["text_mask"]
        logits = self.decoder(ctx.student_text_masked()[0], mask)
        loss = mlm_loss(logits, ctx.batch["text"][mask])
        return loss, {"mlm": loss.detach()}
