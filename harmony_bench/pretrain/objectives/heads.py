"""Projection heads: the DINO/iBOT head (MLP -> L2 norm -> weight-normalised last layer) and SimCLR's MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DistillHead(nn.Module):
    """DINO/iBOT head: ``nlayers`` MLP to a bottleneck, L2-normalised, then a weight-normalised linear.

    ``norm_last_layer=True`` in DINO fixes the weight-norm gain at 1, i.e. the last layer's rows are unit
    vectors: written here directly as ``F.linear(x, normalize(weight))``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int, nlayers: int = 3
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm bottleneck features times unit-norm rows: logits bounded in [-1, 1]."""
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=-1))


def simclr_mlp(in_dim: int, mlp_dim: int, out_dim: int) -> nn.Sequential:
    """SLIP's ``image_mlp``: Linear-BN-ReLU x2, then Linear (BN becomes SyncBN under DDP on CUDA)."""
    return nn.Sequential(
        nn.Linear(in_dim, mlp_dim),
        nn.BatchNorm1d(mlp_dim),
        nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, mlp_dim),
        nn.BatchNorm1d(mlp_dim),
        nn.ReLU(inplace=True),
        nn.Linear(mlp_dim, out_dim),
    )


def teacher_copy(module: nn.Module) -> nn.Module:
    """A frozen copy for the EMA teacher."""
    import copy

    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()
