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
