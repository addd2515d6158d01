"""A registry backbone as an OpenMMLab backbone: block outputs as NCHW maps for UperNet / FPN.

The iBOT/Harmony dense protocols take ViT block outputs at fixed indices ([3, 5, 7, 11] for S/B,
[7, 11, 15, 23] for L), optionally through the final norm (``out_with_norm``), and turn them into a
4-level pyramid with deconvolutions (mmseg's ``Feature2Pyramid``).  Swin already has four stages and
passes them straight on.  The weights come from ``harmony_bench.load_backbone``, so every family's
converter and its load report apply here too: a dense run never sees a half-loaded backbone.

A ViT's position embeddings follow iBOT/Harmony (``harmony_bench.dense.pos_embed``): the checkpoint's grid
is resampled once to ``img_size``'s grid, which is trained; other input sizes interpolate that grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.model import BaseModule

from harmony_bench.models import load_backbone


class RegistryBackbone(BaseModule):
    """Wraps ``load_backbone(backbone, checkpoint)``; ``forward`` returns one NCHW map per ``out_indices``.

    Args:
        backbone: Card name (``harmony-bench list backbones``).
        checkpoint: Local file overriding the card's source (None: the card's source / random init).
        out_indices: Block (ViT) or stage (Swin) indices; repeats are allowed (tiny test models).
        out_with_norm: Put each map through the final norm (iBOT's ``out_with_norm``).
        drop_path_rate: Stochastic depth of the backbone during training.
        img_size: Training input size, an int or ``(height, width)``: a ViT's position embeddings are
            resampled once to its patch grid and trained there, as iBOT/Harmony (512 for ADE20K,
            (800, 1008) / (672, 1092) for COCO); other inputs interpolate that grid (slide windows,
            detector batches).  None keeps the card's grid.  Swin builds at this size.
        trust_checkpoint: Allow full unpickling of the checkpoint (off by default).
        model_overrides: Extra ``timm.create_model`` keywords (tests build tiny variants of each card).
    """

    def __init__(
        self,
        backbone: str,
        checkpoint: str | None = None,
        out_indices: Sequence[int] | None = None,
        out_with_norm: bool = False,
        drop_path_rate: float = 0.0,
        img_size: int | Sequence[int] | None = None,
        trust_checkpoint: bool = False,
        model_overrides: dict[str, Any] | None = None,
        init_cfg: Any = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        from harmony_bench.dense.pos_embed import adopt_upstream_pos_embed

        overrides = {"drop_path_rate": drop_path_rate, **(model_overrides or {})}
        if img_size is not None:
            overrides["img_size"] = tuple(img_size) if isinstance(img_size, (list, tuple)) else img_size
        if _is_vit(backbone):  # any input size (slide windows, detector batches); DINOv2's /14 is padded
            overrides = {"dynamic_img_size": True, "dynamic_img_pad": True, **overrides}
        loaded = load_backbone(
            backbone, checkpoint, trust_checkpoint=trust_checkpoint, pos_embed_antialias=False, **overrides
        )
        adopt_upstream_pos_embed(loaded.model)
        self.card_name = backbone
        self.load_summary = loaded.report.summary
        self.is_vit = loaded.is_vit
        self.embed_dim = loaded.embed_dim
        self.model = loaded.model  # parameter names: backbone.model.<timm name>, see layer_decay.py
        self._loaded = loaded  # not a child module: ``features`` only, the weights live in self.model
        indices = list(
            out_indices if out_indices is not None else loaded.card.architecture.get("out_indices", [])
        )
        if not indices:
            raise ValueError(f"{backbone}: no out_indices given and its card declares none")
        self.out_indices = indices
        self.out_with_norm = out_with_norm

    def init_weights(self) -> None:
        """Keep the loaded weights: mmengine would otherwise call timm's ``init_weights`` and reset them."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One map per ``out_indices`` entry; each distinct block is computed once."""
        unique = sorted(set(self.out_indices))
        maps = self._loaded.features(x, unique, norm=self.out_with_norm)
        by_index = dict(zip(unique, maps, strict=True))
        return tuple(by_index[i] for i in self.out_indices)


def _is_vit(card_name: str) -> bool:
    """Plain ViTs (timm ``vit_*`` and relatives) take any input size; Swin keeps its own."""
    from harmony_bench.cards import get_card

    model_name = get_card(card_name).architecture["timm_model"]
    return model_name.startswith(("vit_", "deit", "beit", "eva"))
