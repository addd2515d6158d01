"""A dense-task ViT's position embeddings, handled the way iBOT's and Harmony's dense code handles them.

Upstream builds the ViT at the training input size (``img_size``: 512 for ADE20K; (800, 1008) for the
ViT-S and (672, 1092) for the ViT-B COCO configs), resamples the checkpoint's grid to that grid ONCE
while loading (bicubic, ``align_corners=False``, no antialiasing) and fine-tunes those parameters
(bytedance/ibot@da316d8 evaluation/semantic_segmentation/mmcv_custom/checkpoint.py:L436-L457,
evaluation/object_detection/mmcv_custom/checkpoint.py:L439-L462).  An input whose patch grid differs
from the learned one gets the learned grid interpolated on the fly: bicubic with the scale factor
``(n + 0.1) / N`` per side, DINO's rule (models/vision_transformer.py:L183-L203,
evaluation/object_detection/mmcv_custom/register_backbone.py:L152-L172).

timm's ``dynamic_img_size`` alone would keep the checkpoint's grid as the parameter and resample it with an
antialiased kernel to the input's grid on every forward: another parameterisation, other numbers.  The
adapter builds the ViT at ``img_size`` and loads with ``pos_embed_antialias=False`` (upstream's load-time
resampling, ``harmony_bench.models.loading.adapt_to_model``); :func:`adopt_upstream_pos_embed` gives the
model upstream's on-the-fly interpolation.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _split(
    pos_embed: torch.Tensor, grid: Sequence[int], num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prefix tokens, patch grid as (1, C, rows, cols))``."""
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    return prefix, patches.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)


def interpolate_to_input(
    pos_embed: torch.Tensor, stored_grid: Sequence[int], input_grid: Sequence[int], num_prefix: int
) -> torch.Tensor:
    """The learned grid for an input of another grid (upstream ``interpolate_pos_encoding``)."""
    if tuple(stored_grid) == tuple(input_grid):
        return pos_embed
    prefix, grid_map = _split(pos_embed, stored_grid, num_prefix)
    rows, cols = input_grid[0] + 0.1, input_grid[1] + 0.1  # DINO: avoid floor() rounding one patch off
    resized = F.interpolate(
        grid_map, scale_factor=(rows / stored_grid[0], cols / stored_grid[1]), mode="bicubic"
    )
    if tuple(resized.shape[-2:]) != tuple(input_grid):
        raise RuntimeError(f"position grid {tuple(resized.shape[-2:])} != input grid {tuple(input_grid)}")
    return torch.cat([prefix, resized.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def _upstream_pos_embed(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Timm ``VisionTransformer._pos_embed`` with the learned grid and upstream's interpolation."""
    batch, rows, cols, channels = x.shape  # NHWC: the model is built with dynamic_img_size
    prefix = 0 if self.no_embed_class else self.num_prefix_tokens
    pos_embed = interpolate_to_input(self.pos_embed, self.patch_embed.grid_size, (rows, cols), prefix)
    x = x.reshape(batch, rows * cols, channels)
    to_cat = [t.expand(batch, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
    if self.no_embed_class:
        x = torch.cat([*to_cat, x + pos_embed], dim=1)
    else:
        x = torch.cat([*to_cat, x], dim=1) + pos_embed
    return self.pos_drop(x)


def adopt_upstream_pos_embed(model: nn.Module) -> None:
    """Give a loaded timm ViT (built with ``dynamic_img_size``) upstream's on-the-fly interpolation.

    Inputs whose patch grid differs from the learned one then get that grid interpolated as iBOT's and
    Harmony's dense backbones do; other models are left alone.
    """
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer) or model.pos_embed is None:
        return
    if not model.dynamic_img_size:
        raise ValueError("the dense adapter builds ViTs with dynamic_img_size=True (NHWC patch embeddings)")
    model._pos_embed = types.MethodType(_upstream_pos_embed, model)
