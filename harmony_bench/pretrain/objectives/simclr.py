"""SLIP's SimCLR branch: NT-Xent between the two global crops' [CLS] features through ``image_mlp``.

SLIP ``SIMCLRLoss``: for views a and b (L2-normalised, gathered over ranks), logits a-b and a-a (self
similarity masked out) over temperature 0.1; cross-entropy with the matching index, averaged over a and b.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.pretrain import distributed
from harmony_bench.pretrain.objectives.base import Objective, StepContext
from harmony_bench.pretrain.objectives.clip import local_labels
from harmony_bench.pretrain.objectives.heads import simclr_mlp

LARGE = 1.0e9


def nt_xent(q_a: torch.Tensor, q_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SLIP's SimCLR loss for local views ``q_a``, ``q_b`` against the gathered batch."""
    q_a, q_b = F.normalize(q_a.float(), dim=-1), F.normalize(q_b.float(), dim=-1)
    k_a, k_b = distributed.gather_with_grad(q_a), distributed.gather_with_grad(q_b)
    labels = local_labels(q_a.shape[0], q_a.device)
    self_mask = F.one_hot(labels, k_a.shape[0]).float() * LARGE
    aa = q_a @ k_a.t() / temperature - self_mask
    bb = q_b @ k_b.t() / temperature - self_mask
    ab, ba = q_a @ k_b.t() / temperature, q_b @ k_a.t() / temperature
    return (
        F.cross_entropy(torch.cat([ab, aa], 1), labels) + F.cross_entropy(torch.cat([ba, bb], 1), labels)
    ) / 2


class SimCLRObjective(Objective):
    """Image self-supervision of SLIP."""

    name = "simclr"
    image_views = (("plain", 0), ("plain", 1))

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        self.mlp = simclr_mlp(towers.vit.embed_dim, int(spec["mlp_dim"]), int(spec["out_dim"]))

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """NT-Xent between the two global crops' projected [CLS] features."""
        # One MLP call per view, as SLIP: its BatchNorm normalises each view over its own batch.
        q_a = self.mlp(ctx.student_plain(0)[:, 0])
        q_b = self.mlp(ctx.student_plain(1)[:, 0])
        loss = nt_xent(q_a, q_b, float(self.spec["temperature"]))
        return loss, {"simclr": loss.detach()}
