"""Building the networks a card describes (randomly initialised): a timm image model, an open_clip text tower.

Card ``architecture`` keys:

- ``timm_model``: the timm model name;
- ``overrides``: keyword arguments for ``timm.create_model`` (``num_heads``, ``pre_norm``,
  ``act_layer: quick_gelu``, ``img_size``, ``init_values`` ...);
- ``norm_eps``: LayerNorm epsilon (YAML cannot hold a ``norm_layer`` partial);
- ``projection_dim``: size of the joint image-text space; the projection is timm's ``head``
  (``num_classes = projection_dim``), otherwise the model is built headless (``num_classes=0``);
- ``out_indices``: the default blocks (ViT) or stages (Swin) for ``Backbone.features``.

Card ``text_tower`` keys: ``embed_dim``, ``context_length``, ``vocab_size``, ``width``, ``heads``,
``layers``, ``mlp_ratio``, ``quick_gelu``, ``norm_eps``, ``tokenizer`` (``open_clip``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from harmony_bench.cards import TEXT_TOWER_KEYS, BackboneCard

INIT_SEED = 0  # random init is reproducible: tiny cards give the same network in every process


def timm_kwargs(card: BackboneCard, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``timm.create_model``: card overrides, then the caller's."""
    from timm.layers import LayerNorm

    arch = card.architecture
    kwargs: dict[str, Any] = {"num_classes": int(arch.get("projection_dim") or 0)}
    kwargs.update(arch.get("overrides") or {})
    kwargs.update(overrides or {})
    norm_eps = kwargs.pop("norm_eps", arch.get("norm_eps"))
    if norm_eps is not None:
        kwargs["norm_layer"] = partial(LayerNorm, eps=float(norm_eps))
    return kwargs


def build_image_model(card: BackboneCard, overrides: dict[str, Any] | None = None) -> nn.Module:
    """The card's timm model, randomly initialised with a fixed seed, in eval mode."""
    import timm

    kwargs = timm_kwargs(card, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = timm.create_model(card.timm_model, pretrained=False, **kwargs)
    return model.eval()


def build_text_model(text_tower: dict[str, Any], overrides: dict[str, Any] | None = None) -> nn.Module:
    """open_clip's ``TextTransformer`` for a card's ``text_tower`` block (plus caller overrides)."""
    from open_clip.model import CLIPTextCfg, _build_text_tower

    spec = {**text_tower, **(overrides or {})}
    unknown = sorted(set(spec) - TEXT_TOWER_KEYS)
    if unknown:
        raise ValueError(f"unknown text_tower keys {unknown} (allowed: {sorted(TEXT_TOWER_KEYS)})")
    if spec.get("tokenizer", "open_clip") != "open_clip":
        raise ValueError(f"text_tower.tokenizer {spec['tokenizer']!r} is not supported (only 'open_clip')")
    cfg = CLIPTextCfg(
        context_length=int(spec.get("context_length", 77)),
        vocab_size=int(spec.get("vocab_size", 49408)),
        width=int(spec["width"]),
        heads=int(spec["heads"]),
        layers=int(spec["layers"]),
        mlp_ratio=float(spec.get("mlp_ratio", 4.0)),
        norm_kwargs={"eps": float(spec["norm_eps"])} if spec.get("norm_eps") is not None else None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED + 1)
        text = _build_text_tower(int(spec["embed_dim"]), cfg, quick_gelu=bool(spec.get("quick_gelu", False)))
    return text.eval()


def build_tokenizer(text_tower: dict[str, Any]) -> Any:
    """open_clip's CLIP BPE tokenizer (lower-cased, SOT/EOT, padded to the context length)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=int(text_tower.get("context_length", 77)))
