"""The shared student networks: one timm ViT and one open_clip text tower, and their masked forwards.

Every objective runs the same two towers.  ``Towers`` adds what pre-training
needs beyond an eval backbone: iBOT's learnable [MASK] patch embedding.  The
ViT's ``head`` is Harmony's ``contrastive_projection`` (width x 512, no bias: the
bias is zero and frozen), so the exported teacher is a plain timm model whose
``model(x)`` is the image embedding, exactly what the registry's cards expect.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Towers(nn.Module):
    """Student (or EMA teacher) networks: ``vit``, optional ``text``, optional ``mask_token`` (zeros)."""

    def __init__(self, vit: nn.Module, text: nn.Module | None, mask_token: bool) -> None:
        super().__init__()
        self.vit = vit
        self.text = text
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim)) if mask_token else None


def build_vit(model_cfg: dict[str, Any], projection: bool) -> nn.Module:
    """The timm ViT with dynamic image size (for 96 px local crops) and drop path, initialised as Harmony's.

    timm's init equals Harmony's ``VisionTransformer`` (``models/vision_transformer.py`` L177-L198: trunc
    normal 0.02 for ``pos_embed`` and every Linear, LayerNorms 1/0) except for two tensors, set here as the
    repo does: the [CLS] token (trunc normal 0.02, timm N(0, 1e-6)) and the CLIP projection
    (``contrastive_projection``, N(0, D^-0.5), L181-L184; timm trunc normal 0.02).
    """
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
    nn.init.trunc_normal_(vit.cls_token, std=0.02)
    if projection:
        nn.init.normal_(vit.head.weight, std=vit.embed_dim**-0.5)
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
    return towers  # the [MASK] embedding starts at zero, as Harmony's ``masked_embed`` (L189)


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
    b, h, w, d = x.shape
    x = torch.cat([vit.cls_token.expand(b, -1, -1), x.reshape(b, h * w, d)], dim=1)  # timm's promotion
    x = x + pos_embed_for(vit, (h, w))
    x = vit.norm_pre(vit.patch_drop(vit.pos_drop(x)))
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
    """The ViT's position embeddings (cls row first) for a ``grid`` of patches, as DINO/iBOT/Harmony resample.

    Harmony's ``VisionTransformer.interpolate_pos_encoding`` (``models/vision_transformer.py`` L200-L220,
    DINO's): the table itself when the grid is the ViT's own (the global crops); otherwise bicubic with a
    *scale factor* of ``(n + 0.1) / sqrt(N)`` per side (the +0.1 keeps the output size from rounding down),
    no antialiasing.  PyTorch maps output pixels back with that factor, not with ``n / sqrt(N)``, so this is
    not timm's ``resample_abs_pos_embed`` (antialiased, exact output size): for 14x14 -> 6x6 the two differ
    by 5% (a sin-cos table) to 200% (a random-init table) relative L2 to timm's.
    """
    table = vit.pos_embed
    side = int(math.sqrt(table.shape[1] - 1))
    h, w = grid
    if h * w == side * side and h == w:
        return table
    patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(
        patches.float(), scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic"
    ).to(table.dtype)
    if patches.shape[-2:] != (h, w):
        raise ValueError(f"position embeddings: {side}x{side} became {tuple(patches.shape[-2:])}, not {grid}")
    return torch.cat([table[:, :1], patches.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)


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


def text_tokens(
    text: nn.Module, ids: torch.Tensor, eot: torch.Tensor, full_context: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (B, L, W) BEFORE ln_final, pooled embedding (B, E))``; pooled at the given EOT positions.

    The token features are the transformer's output before the final LayerNorm: Harmony's
    ``TextEncoder(..., return_without_proj=True)`` returns ``x`` from before ``text_norm``
    (``models/text_encoder.py`` L56-L70), and that is what MLM (``models/harmony.py`` L133-L138) and the
    text-distillation heads (``models/utils.py`` L41-L44) read, so ``ln_final`` only gets CLIP's gradient.
    The pooled embedding is ``ln_final`` at the EOT, then the projection (CLIP).

    open_clip pools at ``ids.argmax()``; with [MASK] = 49408 > EOT that would pick a mask, so the EOT
    position of the unmasked caption is passed in.  ``ids`` may be cut after the longest caption
    (``trim_text_padding``): exact for a causal tower; a bidirectional one gets its padding back.
    ``full_context`` returns every position of the full context (the cut padding restored), as the repo's
    77-token tensors.
    """
    n, context = ids.shape[1], text.positional_embedding.shape[0]
    if (full_context or text.attn_mask is None) and n < context:  # restore the padding the loader cut
        ids = F.pad(ids, (0, context - n))
    x, attn_mask = text._embeds(ids)
    if attn_mask is not None and attn_mask.dim() == 2 and attn_mask.shape[0] > x.shape[1]:
        attn_mask = attn_mask[: x.shape[1], : x.shape[1]]  # open_clip slices only with a padding mask
    x = text.transformer(x, attn_mask=attn_mask)
    if not full_context:
        x = x[:, :n]
    pooled = text.ln_final(x[torch.arange(x.shape[0], device=x.device), eot])
    proj = text.text_projection
    pooled = proj(pooled) if isinstance(proj, nn.Module) else pooled @ proj
    return x, pooled


def eot_positions(ids: torch.Tensor, eot_id: int) -> torch.Tensor:
    """Index of the EOT token in each caption."""
    return (ids == eot_id).int().argmax(dim=-1)
