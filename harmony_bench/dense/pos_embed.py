"""A dense-task ViT's position embeddings, handled the way iBOT's and Harmony's dense code handles them.

Upstream builds the ViT at the training input size (``img_size``: 512 for ADE20K; (800, 1008) for the
ViT-S and (672, 1092) for the ViT-B COCO configs), resamples the checkpoint's grid to that grid ONCE
while loading (bicubic, ``align_corners=False``, no antialiasing) and fine-tunes those parameters
(bytedance/ibot@da316d8 evaluation/semantic_segmentation/mmcv_custom/checkpoint.py:L436-L457,
evaluation/object_detection/mmcv_custom/checkpoint.py:L439-L462).  An input whose patch grid differs
from the learned one gets the learned grid interpolated on the fly: bicubic with the scale factor
``(n + 0.1) / N`` per side, DINO's rule (models/vision_transformer.py:L183-L203,
evaluation/object_detection/mmcv_custom/register_backbone.py:L152-L172).

timm's ``dynamic_img_size`` instead keeps the checkpoint's grid as the parameter and resamples it with an
antialiased kernel to the input's grid on every forward: another parameterisation, other numbers.
:func:`adopt_upstream_pos_embed` turns a loaded timm ``VisionTransformer`` into the upstream form.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def grid_for(img_size: int | Sequence[int], patch_size: Sequence[int]) -> tuple[int, int]:
    """The patch grid ``(rows, cols)`` of ``img_size`` (int or ``(height, width)``), floored as upstream."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return int(height) // int(patch_size[0]), int(width) // int(patch_size[1])


def _split(
    pos_embed: torch.Tensor, grid: Sequence[int], num_prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prefix tokens, patch grid as (1, C, rows, cols))``."""
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    grid_map = patches.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
    return prefix, grid_map


def _join(prefix: torch.Tensor, grid_map: torch.Tensor) -> torch.Tensor:
    return torch.cat([prefix, grid_map.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


def resample_at_load(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int], num_prefix: int
) -> torch.Tensor:
    """The checkpoint grid resampled to the training grid, once (upstream ``load_checkpoint``)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid_map = _split(pos_embed, old_grid, num_prefix)
    resized = F.interpolate(grid_map.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    return _join(prefix, resized.to(pos_embed.dtype))


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
    return _join(prefix, resized)


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


def adopt_upstream_pos_embed(model: nn.Module, img_size: int | Sequence[int] | None) -> None:
    """Make a loaded timm ViT's position embeddings behave as iBOT's/Harmony's dense backbones.

    ``model.pos_embed`` becomes a new trainable parameter on ``img_size``'s grid (None keeps the model's
    own grid), and inputs of another grid interpolate it with upstream's rule.
    """
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer) or model.pos_embed is None:
        return
    if not model.dynamic_img_size:
        raise ValueError("the dense adapter builds ViTs with dynamic_img_size=True (NHWC patch embeddings)")
    patch_embed = model.patch_embed
    if img_size is not None:
        new_grid = grid_for(img_size, patch_embed.patch_size)
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        with torch.no_grad():
            resampled = resample_at_load(model.pos_embed.data, patch_embed.grid_size, new_grid, prefix)
        model.pos_embed = nn.Parameter(resampled.clone(), requires_grad=model.pos_embed.requires_grad)
        patch_embed.img_size = (
            new_grid[0] * patch_embed.patch_size[0],
            new_grid[1] * patch_embed.patch_size[1],
        )
        patch_embed.grid_size = new_grid
        patch_embed.num_patches = new_grid[0] * new_grid[1]
    model._pos_embed = types.MethodType(_upstream_pos_embed, model)
