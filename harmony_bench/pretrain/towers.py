"""The shared student networks: one timm ViT and one open_clip text tower, and their masked forwards.

Every objective runs the same two towers.  ``Towers`` adds what pre-training
needs beyond an eval backbone: iBOT's learnable [MASK] patch embedding.  The
ViT's ``head`` is Harmony's ``contrastive_projection`` (width x 512, no bias: the
bias is zero and frozen), so the exported teacher is a plain timm model whose
``model(x)`` is the image embedding, exactly what the registry's cards expect.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Towers(nn.Module):
    """Student (or EMA teacher) networks: ``vit``, optional ``text``, optional ``mask_token``."""

    def __init__(self, vit: nn.Module, text: nn.Module | None, mask_token: bool) -> None:
        super().__init__()
        self.vit = vit
        self.text = text
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim)) if mask_token else None


def build_vit(model_cfg: dict[str, Any], projection: bool) -> nn.Module:
    """The timm ViT with dynamic image size (for 96 px local crops) and drop path."""
    import timm
    from timm.layers import LayerNorm

    kwargs: dict[str, Any] = {
        "num_classes": int(model_cfg["projection_dim"]) if projection else 0,
        "dynamic_img_size": True,
        "drop_path_rate": float(model_cfg["drop_path_rate"]),
        "norm_layer": partial(LayerNorm, eps=float(model_cfg["norm_eps"])),
        **(model_cfg.get("overrides") or {}),
    }
    vit = timm.create_model(model_cfg["arch"], pretrained=False, **kwargs)
    if not hasattr(vit, "blocks") or vit.cls_token is None or getattr(vit, "no_embed_class", False):
        raise ValueError(f"--arch {model_cfg['arch']}: pretraining needs a plain timm ViT with a class token")
    if projection:
        nn.init.zeros_(vit.head.bias)
        vit.head.bias.requires_grad_(False)
    return vit


def build_towers(cfg: dict[str, Any], *, text: bool, mask_token: bool, projection: bool) -> Towers:
    """Seeded student towers (every rank builds the same ones; DDP also broadcasts them)."""
    from harmony_bench.models.build import build_text_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        vit = build_vit(cfg["model"], projection)
    text_model = build_text_model({**cfg["model"]["text"], "tokenizer": "open_clip"}) if text else None
    if text_model is not None:
        text_model.train()
    towers = Towers(vit, text_model, mask_token)
    set_grad_checkpointing(towers, bool(cfg["model"].get("grad_checkpointing")))
    if towers.mask_token is not None:
        nn.init.trunc_normal_(towers.mask_token, std=0.02)
    return towers


def set_grad_checkpointing(towers: Towers, enable: bool) -> None:
    """Recompute the towers' blocks in the backward (timm's and open_clip's switches; see ``run_blocks``)."""
    towers.vit.set_grad_checkpointing(enable)
    if towers.text is not None:
        towers.text.set_grad_checkpointing(enable)


def patch_size(vit: nn.Module) -> int:
    """The ViT's patch size (square patches)."""
    return int(vit.patch_embed.patch_size[0])


def image_tokens(
    vit: nn.Module,
    images: torch.Tensor,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final-normed tokens ``(B, 1 + N, D)``; masked patches (``mask`` ``(B, h, w)``) get ``mask_token``."""
    x = vit.patch_embed(images)  # (B, h, w, D): dynamic_img_size keeps the grid
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype), x)
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
    return vit.norm(run_blocks(vit, x))


def run_blocks(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ViT's blocks, through timm's ``checkpoint_seq`` when grad checkpointing is on and grads flow.

    Checkpointing keeps the RNG state of the first pass, so drop path drops the same paths when a block is
    recomputed: gradients are those of the plain forward.
    """
    if getattr(vit, "grad_checkpointing", False) and torch.is_grad_enabled():
        from timm.models import checkpoint_seq

        return checkpoint_seq(vit.blocks, x, use_reentrant=False)
    return vit.blocks(x)


def pos_embed_for(vit: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """The ViT's position embeddings (cls row first) resampled to ``grid``."""
    from timm.layers import resample_abs_pos_embed

    return resample_abs_pos_embed(
        vit.pos_embed, list(grid), list(vit.patch_embed.grid_size), num_prefix_tokens=1
    )


def visible_tokens(vit: nn.Module, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """MAE encoder: only the patches listed in ``keep`` ``(B, K)`` (plus cls) go through the blocks."""
    x = vit.patch_embed(images)
    b, h, w, d = x.shape
    pos = pos_embed_for(vit, (h, w))
    x = x.reshape(b, h * w, d) + pos[:, 1:]
    x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, d))
    cls = (vit.cls_token + pos[:, :1]).expand(b, -1, -1)
    x = vit.norm_pre(torch.cat([cls, x], dim=1))
    return vit.norm(run_blocks(vit, x))


def text_tokens(text: nn.Module, ids: torch.Tensor, eot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (B, L, W) after ln_final, pooled embedding (B, E))``; pooled at the given EOT positions.

    open_clip pools at ``ids.argmax()``; with [MASK] = 49408 > EOT that would pick a mask, so the EOT
    position of the unmasked caption is passed in.  ``ids`` may be cut after the longest caption
    (``trim_text_padding``): exact for a causal tower; a bidirectional one gets its padding back.
    """
    n, context = ids.shape[1], text.positional_embedding.shape[0]
    if text.attn_mask is None and n < context:  # bidirectional: the padding is attended to, restore it
        ids = F.pad(ids, (0, context - n))
    x, attn_mask = text._embeds(ids)
    if attn_mask is not None and attn_mask.dim() == 2 and attn_mask.shape[0] > x.shape[1]:
        attn_mask = attn_mask[: x.shape[1], : x.shape[1]]  # open_clip slices only with a padding mask
    x = text.ln_final(text.transformer(x, attn_mask=attn_mask))[:, :n]
    pooled = x[torch.arange(x.shape[0], device=x.device), eot]
    proj = text.text_projection
    pooled = proj(pooled) if isinstance(proj, nn.Module) else pooled @ proj
    return x, pooled


def eot_positions(ids: torch.Tensor, eot_id: int) -> torch.Tensor:
    """Index of the EOT token in each caption."""
    return (ids == eot_id).int().argmax(dim=-1)
