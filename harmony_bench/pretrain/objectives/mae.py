"""MAE: reconstruct the normalised pixels of 75% randomly dropped patches from the visible 25%.

The student ViT encodes the kept patches (MAE ``random_masking`` as a per-sample permutation from the data
pipeline); an 8-block, 512-d decoder fills in [MASK] tokens.  Its position embeddings are all zero by
default, as in the Harmony repo, whose ``generative.py`` never calls ``initialize_deocder_weights()``
(reproduced on purpose: the paper's numbers come from it); ``decoder_pos_embed: sincos`` is the opt-in fix
(MAE's fixed 2-D sin-cos table), recorded as a deviation.  Loss: per-patch normalised pixels
(``norm_pix_loss``), MSE averaged over masked patches, summed over the global crops.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harmony_bench.pretrain import towers as T
from harmony_bench.pretrain.data.masking import keep_count
from harmony_bench.pretrain.objectives.base import Objective, StepContext


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE's ``get_1d_sincos_pos_embed_from_grid``: ``[sin(p w), cos(p w)]``, ``w = 10000^(-2i/dim)``."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions.double().reshape(-1)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's ``get_2d_sincos_pos_embed``: half the channels encode the row, half the column; cls row zero."""
    coords = torch.arange(grid, dtype=torch.float64)
    grid_w, grid_h = torch.meshgrid(coords, coords, indexing="xy")  # numpy meshgrid(w, h) order, as MAE
    emb = torch.cat([sincos_1d(dim // 2, grid_w), sincos_1d(dim // 2, grid_h)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb])
    return emb.float()


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, N, p*p*3)`` in MAE's ``nchpwq -> nhwpqc`` order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def mae_loss(
    pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool
) -> torch.Tensor:
    """MAE ``forward_loss``: MSE per patch, averaged over masked patches (``mask`` 1 = removed)."""
    target = patchify(images.float(), patch)
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred.float() - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


POS_EMBEDS = ("zeros", "sincos")


class MAEDecoder(nn.Module):
    """The decoder of Harmony's ``GenerativePath`` (MAE) and of its MaskCLIP, as the repo builds them.

    ``[latent; mask tokens]`` unshuffled, plus ``pos_embed``, transformer blocks (LayerNorm eps 1e-5: the
    repo passes ``norm_layer=nn.LayerNorm``, ``models/generative.py`` L11, L25, L28), final LayerNorm, then
    an optional pixel predictor.  ``embed=False`` / ``out_dim=None`` give MaskCLIP's decoder, which has
    neither the input projection nor the predictor (``models/maskclip.py`` L102-L116, L175-L193).

    ``pos_embed="zeros"`` is the repo's: ``decoder_pos_embed`` and ``mask_token`` are created as zeros and
    the initialiser that would fill them (``initialize_deocder_weights``, ``models/generative.py`` L31-L36)
    is never called, so every masked patch of an image enters the blocks as the same vector and gets the
    same prediction.  ``"sincos"`` is that initialiser run (MAE's fixed 2-D sin-cos table and a N(0, 0.02)
    mask token), the opt-in fix.  The linear layers keep PyTorch's default init, as in the repo (nothing
    applies MAE's xavier init there).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        heads: int,
        grid: int,
        patch: int,
        out_dim: int | None = -1,
        *,
        embed: bool = True,
        pos_embed: str = "zeros",
    ) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"decoder_pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}")
        if not embed and in_dim != dim:
            raise ValueError(f"a decoder without an input projection needs in_dim == dim ({in_dim} != {dim})")
        self.embed = nn.Linear(in_dim, dim) if embed else nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = sincos_2d(dim, grid) if pos_embed == "sincos" else torch.zeros(grid * grid + 1, dim)
        self.register_buffer("pos_embed", table.unsqueeze(0))
        self.blocks = nn.Sequential(
            *[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        if out_dim == -1:
            out_dim = patch * patch * 3
        self.pred = nn.Linear(dim, out_dim) if out_dim is not None else nn.Identity()
        if pos_embed == "sincos":
            nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """``latent`` (B, 1 + K, D) -> outputs for [CLS] and all N patches (B, 1 + N, out)."""
        x = self.embed(latent)
        b, n = restore.shape
        fill = self.mask_token.to(x.dtype).expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], fill], dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embed.to(x.dtype)
        return self.pred(self.norm(self.blocks(x)))


def split_permutation(perm: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(keep ids (B, K), restore ids (B, N), mask (B, N) with 1 = removed)`` from a permutation."""
    n = perm.shape[1]
    k = keep_count(n, ratio)
    restore = torch.argsort(perm, dim=1)
    mask = torch.ones_like(perm, dtype=torch.float32)
    mask[:, :k] = 0
    return perm[:, :k], restore, torch.gather(mask, 1, restore)


class MAEObjective(Objective):
    """Masked autoencoding of each global crop (Harmony: both, summed)."""

    name = "mae"

    def __init__(self, cfg: dict[str, Any], spec: dict[str, Any], towers: nn.Module) -> None:
        super().__init__(cfg, spec, towers)
        self.patch = T.patch_size(towers.vit)
        grid = int(cfg["crops"]["global_size"]) // self.patch
        self.decoder = MAEDecoder(
            towers.vit.embed_dim,
            int(spec["decoder_dim"]),
            int(spec["decoder_depth"]),
            int(spec["decoder_heads"]),
            grid,
            self.patch,
            pos_embed=str(spec["decoder_pos_embed"]),
        )

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All reconstructed crops go through the encoder and decoder as one batch; losses are summed."""
        crops = [int(c) for c in self.spec["crops"]]
        images = torch.cat([ctx.batch["crops"][c] for c in crops])
        perm = torch.cat([ctx.batch["perms"][:, c] for c in crops])
        keep, restore, mask = split_permutation(perm, float(self.spec["mask_ratio"]))
        pred = self.decoder(T.visible_tokens(ctx.student.vit, images, keep), restore)[:, 1:]
        norm_pix = bool(self.spec["norm_pix_loss"])
        parts = zip(pred.chunk(len(crops)), images.chunk(len(crops)), mask.chunk(len(crops)), strict=True)
        loss = sum(mae_loss(p, x, m, self.patch, norm_pix) for p, x, m in parts)
        return loss, {"mae": loss.detach()}
