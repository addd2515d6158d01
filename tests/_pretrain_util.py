"""Shared helpers for the pretraining tests: tiny configs and models, fixed batches, reference pieces.

The references here are written from the objectives' definitions with plain torch ops (explicit patch
embedding, explicit head MLP, explicit cross-entropies), not by calling the code under test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harmony_bench.pretrain.config import load_config
from harmony_bench.pretrain.data import masking
from harmony_bench.pretrain.model import PretrainModel

CAPTIONS = (
    "a photo of a red circle on a blue background.",
    "two shapes: a green square and a yellow triangle drawn over a grey texture.",
    "an image showing a purple star, white background.",
    "a photo of an orange circle and a black square on a striped background.",
    "a blue triangle drawn over a dotted texture.",
    "an image showing three shapes, red background.",
)


def tiny_cfg(method: str = "harmony", sets: list[str] | None = None) -> dict[str, Any]:
    """The smoke preset's tiny ViT / text tower for ``method`` (plus ``--set`` style overrides)."""
    return load_config(method, "smoke", list(sets or []))


def tiny_model(cfg: dict[str, Any], seed: int = 0, perturb_teacher: bool = True) -> PretrainModel:
    """A ``PretrainModel`` whose teacher differs from the student and whose centres are non-zero.

    A teacher equal to the student (as at step 0) would hide a student/teacher mix-up in a loss.
    """
    torch.manual_seed(seed)
    model = PretrainModel(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        if perturb_teacher:
            for p in model.teacher.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
            head = getattr(model.teacher.vit, "head", None)
            if isinstance(head, torch.nn.Linear) and head.bias is not None:
                head.bias.zero_()  # frozen zero in the student, so in the EMA teacher
            for objective in model.objectives.values():
                for _, teacher in objective.ema_pairs():
                    for p in teacher.parameters():
                        p.add_(torch.randn(p.shape, generator=g) * 0.02)
        for name, buf in model.named_buffers():
            if name.endswith("center") or name.endswith("center2"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
    return model.train()


def tokenizer(cfg: dict[str, Any]) -> Any:
    from harmony_bench.models.build import build_tokenizer

    return build_tokenizer(cfg["model"]["text"])


def fixed_batch(cfg: dict[str, Any], batch: int = 4, seed: int = 0) -> dict[str, Any]:
    """A deterministic batch in the data pipeline's format (random pixels, real tokenised captions)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    crops_cfg = cfg["crops"]
    gs, ls = int(crops_cfg["global_size"]), int(crops_cfg["local_size"])
    crops = [torch.randn(batch, 3, gs, gs, generator=g) for _ in range(2)]
    crops += [torch.randn(batch, 3, ls, ls, generator=g) for _ in range(int(crops_cfg["local_number"]))]
    patch = int(cfg["model"]["overrides"]["patch_size"])
    grid = gs // patch
    block = torch.zeros(batch, 2, grid, grid, dtype=torch.bool)
    for b in range(batch):
        for v in range(2):
            block[b, v] = torch.from_numpy(masking.block_mask(rng, (grid, grid), 0.4))
    block[0, 1] = False  # one view with nothing masked: its patch term must count as zero
    perms = torch.stack(
        [torch.stack([torch.randperm(grid * grid, generator=g) for _ in range(2)]) for _ in range(batch)]
    )
    out: dict[str, Any] = {"crops": crops, "block_masks": block, "perms": perms}
    tok = tokenizer(cfg)
    ids = tok([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)])
    text_mask = torch.from_numpy(
        np.stack([masking.text_mask(rng, t.numpy(), 0.2, (tok.sot_token_id, tok.eot_token_id)) for t in ids])
    )
    masked = ids.clone()
    masked[text_mask] = tok.vocab_size
    out.update(text=ids, text_masked=masked, text_mask=text_mask)
    return out


def sched(epoch: int = 0, hard_weight: float = 1.0, momentum: float = 0.996) -> dict[str, float]:
    return {
        "epoch": float(epoch),
        "hard_weight": hard_weight,
        "momentum": momentum,
        "lr": 1e-3,
        "weight_decay": 0.04,
    }


def without_key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Attention key biases have a zero gradient in exact arithmetic (softmax ignores a constant shift), so
    their float32 gradient is rounding noise that AdamW's normalisation blows up to ~lr: leave them out."""
    if name.endswith(("in_proj_bias", "attn.qkv.bias")):
        third = tensor.shape[0] // 3
        return torch.cat([tensor[:third], tensor[2 * third :]])
    return tensor


# ---- references from the definitions -------------------------------------------------------------------


def ref_patch_embed(vit: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Conv patch embedding as ``(B, N, D)`` in row-major patch order."""
    return (
        F.conv2d(
            images, vit.patch_embed.proj.weight, vit.patch_embed.proj.bias, stride=vit.patch_embed.proj.stride
        )
        .flatten(2)
        .transpose(1, 2)
    )


def ref_encoder(vit: torch.nn.Module, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``[cls; x]`` + positions through every block, then the final norm.  ``pos`` (1, 1 + n, D)."""
    cls = vit.cls_token.expand(x.shape[0], -1, -1)
    h = torch.cat([cls, x], dim=1) + pos
    for block in vit.blocks:
        h = block(h)
    return vit.norm(h)


def ref_global_tokens(
    vit: torch.nn.Module,
    images: torch.Tensor,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tokens of a global crop (its grid is the ViT's own), masked patches replaced by ``mask_token``."""
    x = ref_patch_embed(vit, images)
    if mask is not None:
        m = mask.flatten(1).unsqueeze(-1)
        x = torch.where(m, mask_token.reshape(1, 1, -1).expand_as(x), x)
    return ref_encoder(vit, x, vit.pos_embed)


def ref_distill_head(head: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DINO head with ``norm_last_layer``: MLP (GELU between), L2-normalise, unit-row last layer."""
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        x = x @ lin.weight.t() + lin.bias
        if i < len(linears) - 1:
            x = F.gelu(x)
    x = x / x.norm(dim=-1, keepdim=True)
    w = head.last_layer.weight
    return x @ (w / w.norm(dim=1, keepdim=True)).t()


def ref_h(
    teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor, t_temp: float, s_temp: float
) -> torch.Tensor:
    """DINO's cross-entropy per row: ``-sum softmax((t - c)/T_t) * log softmax(s/T_s)``."""
    p = torch.exp((teacher - center) / t_temp)
    p = p / p.sum(-1, keepdim=True)
    log_q = student / s_temp - torch.logsumexp(student / s_temp, dim=-1, keepdim=True)
    return -(p * log_q).sum(-1)


def ref_soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_j target_ij log softmax(logits)_ij``."""
    return -(target * (logits - torch.logsumexp(logits, dim=1, keepdim=True))).sum(1).mean()


# ---- Harmony-repo rules, restated (MohammedSB/Harmony@848f7ac) ------------------------------------------


def ref_text_features(towers: Any, ids: torch.Tensor) -> torch.Tensor:
    """Harmony ``TextEncoder(..., return_without_proj=True)[1]``: the transformer output BEFORE ``text_norm``.

    Embedding + positions, causal blocks, no final LayerNorm (``models/text_encoder.py`` L56-L70).
    """
    text = towers.text
    n = ids.shape[1]
    x = text.token_embedding(ids) + text.positional_embedding[:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    return text.transformer(x, attn_mask=causal)


def ref_text_embedding(towers: Any, ids: torch.Tensor) -> torch.Tensor:
    """CLIP's text embedding: ``text_norm`` at the EOT (the argmax id of a clean caption), then projection."""
    x = ref_text_features(towers, ids)
    pooled = towers.text.ln_final(x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)])
    return pooled @ towers.text.text_projection


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's QuickGELU (Harmony ``models/transformer.py`` L18-L20): ``x * sigmoid(1.702 x)``."""
    return x * torch.sigmoid(1.702 * x)


def ref_mlm_logits(decoder: Any, feats: torch.Tensor) -> torch.Tensor:
    """Harmony's ``TextDecoder``: CLIP residual blocks (QuickGELU MLP, causal), LayerNorm, vocabulary."""
    n = feats.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    x = feats
    for blk in decoder.transformer.resblocks:
        h = blk.ln_1(x)
        x = x + blk.attn(h, h, h, need_weights=False, attn_mask=causal)[0]
        h = blk.mlp.c_fc(blk.ln_2(x))
        x = x + blk.mlp.c_proj(quick_gelu(h))
    return decoder.out(decoder.norm(x))


def ref_cubic(t: float, a: float = -0.75) -> list[float]:
    """The four cubic-convolution weights PyTorch's bicubic uses (A = -0.75) for fractional offset ``t``."""

    def near(x: float) -> float:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def ref_resample_axis(values: torch.Tensor, n_out: int, scale: float) -> torch.Tensor:
    """Bicubic along dim 0 with PyTorch's source mapping for a given scale factor (no antialias, borders
    clamped): output ``i`` reads ``src = (i + 0.5) / scale - 0.5``."""
    import math

    n_in = values.shape[0]
    rows = []
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        w = ref_cubic(src - base)
        rows.append(sum(w[k] * values[min(max(base - 1 + k, 0), n_in - 1)] for k in range(4)))
    return torch.stack(rows)


def ref_dino_pos_embed(pos_embed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """DINO/Harmony ``interpolate_pos_encoding`` (``models/vision_transformer.py`` L200-L220), written out.

    The table itself for the ViT's own square grid; else ``interpolate(scale_factor=((h + 0.1) / sqrt(N),
    (w + 0.1) / sqrt(N)), mode='bicubic')``: the output has h x w cells and PyTorch maps them back with that
    factor (the +0.1 included).
    """
    side = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if h == w == side:
        return pos_embed
    grid = pos_embed[0, 1:].reshape(side, side, -1)
    grid = ref_resample_axis(grid, h, (h + 0.1) / side)  # rows
    grid = ref_resample_axis(grid.transpose(0, 1), w, (w + 0.1) / side).transpose(0, 1)  # columns
    return torch.cat([pos_embed[:, :1], grid.reshape(1, h * w, -1)], dim=1)


def ref_local_tokens(vit: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Tokens of a local crop: DINO's resampled position table (see :func:`ref_dino_pos_embed`)."""
    x = ref_patch_embed(vit, images)
    side = images.shape[-1] // vit.patch_embed.proj.stride[0]
    return ref_encoder(vit, x, ref_dino_pos_embed(vit.pos_embed, side, side))


def ref_patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    out = []
    for i in range(h // p):
        for j in range(w // p):
            out.append(
                images[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p].permute(0, 2, 3, 1).reshape(b, -1)
            )
    return torch.stack(out, dim=1)


def ref_mae_encode(vit: torch.nn.Module, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """MAE ``forward_encoder``: visible patches (+ their positions), then cls + pos[0], blocks, norm."""
    b = keep.shape[0]
    x = ref_patch_embed(vit, images) + vit.pos_embed[:, 1:]
    visible = torch.stack([x[i, keep[i]] for i in range(b)])
    cls_pos = torch.cat([vit.pos_embed[:, :1], torch.zeros_like(visible[:1])], dim=1)
    return ref_encoder(vit, visible, cls_pos)  # ref_encoder adds pos to [cls; visible]: cls gets pos[0]


def ref_mae_decode(decoder: Any, latent: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
    """MAE ``forward_decoder`` (embed, [MASK] fill, unshuffle, + decoder_pos_embed, blocks, norm, pred)."""
    b = keep.shape[0]
    h = decoder.embed(latent)
    full = decoder.mask_token.expand(b, n, -1).clone()
    for i in range(b):
        full[i, keep[i]] = h[i, 1:]
    z = torch.cat([h[:, :1], full], dim=1) + decoder.pos_embed
    for block in decoder.blocks:
        z = block(z)
    return decoder.pred(decoder.norm(z))


def ref_mae_crop(
    vit: torch.nn.Module,
    decoder: Any,
    images: torch.Tensor,
    perm: torch.Tensor,
    ratio: float = 0.75,
    patch: int = 8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Harmony ``GenerativePath`` loss of one crop: normalised-pixel MSE on the removed patches."""
    b, n = perm.shape
    keep = perm[:, : int(n * (1 - ratio))]
    pred = ref_mae_decode(decoder, ref_mae_encode(vit, images, keep), keep, n)[:, 1:]
    target = ref_patchify(images, patch)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    removed = torch.ones(b, n)
    for i in range(b):
        removed[i, keep[i]] = 0
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * removed).sum() / removed.sum(), pred, removed
