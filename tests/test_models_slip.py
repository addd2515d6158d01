"""SLIP-repo checkpoints (SLIP and CLIP models) vs timm image towers and an independent CLIP text encoder."""

import argparse

import torch
from torch import nn

from harmony_bench import load_backbone

from ._models_util import (
    TINY_TEXT,
    TINY_VIT,
    compare_text,
    compare_vision,
    images,
    max_abs,
    perturb,
    reference_vit,
    text_reference,
)


def slip_checkpoint(visual: nn.Module, with_ssl_head: bool = True) -> tuple[dict, torch.Tensor, nn.Module]:
    """``main.py``'s save_dict for a SLIP model: DDP keys, image tower under visual., CLIP text tower."""
    torch.manual_seed(3)
    projection = torch.randn(visual.embed_dim, 16) * 0.1
    text = text_reference("openai")
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state.update({"image_projection": projection, "logit_scale": torch.tensor(2.6593), **text.state_dict()})
    if with_ssl_head:
        state.update(
            {
                "image_mlp.layer1.weight": torch.randn(32, visual.embed_dim),
                "image_mlp.bn1.running_mean": torch.zeros(32),
            }
        )
    container = {
        "epoch": 25,
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": []},
        "scaler": {"scale": 65536.0},
        "best_acc1": 38.3,
        "args": argparse.Namespace(model="SLIP_VITS16", ssl_mlp_dim=4096, output_dir="/ckpt"),
    }
    return container, projection, text


def test_slip_vit_b16(tmp_path):
    visual = reference_vit()
    container, projection, text = slip_checkpoint(visual)
    path = tmp_path / "slip_base_25ep.pt"
    torch.save(container, path)
    backbone = load_backbone(
        "slip-vit-b16-yfcc15m-25ep", str(path), text_tower=TINY_TEXT, num_classes=16, **TINY_VIT
    )
    compare_vision(backbone, visual, "slip-image", projection=projection)
    compare_text(backbone, text, "slip-text")
    assert "image_mlp.layer1.weight" in backbone.report.dropped and "logit_scale" in backbone.report.dropped


def test_slip_vit_s16_has_12_heads(tmp_path):
    tiny = {"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2}  # 48 = 12 heads x 4 = 6 heads x 8
    visual = reference_vit(**tiny, num_heads=12)
    container, projection, text = slip_checkpoint(visual, with_ssl_head=False)
    path = tmp_path / "slip_small_25ep.pt"
    torch.save(container, path)
    backbone = load_backbone(
        "slip-vit-s16-yfcc15m-25ep", str(path), text_tower=TINY_TEXT, num_classes=16, **tiny
    )
    assert all(block.attn.num_heads == 12 for block in backbone.model.blocks)
    compare_vision(backbone, visual, "slip-vit-s-12-heads", projection=projection)
    # timm's vit_small (6 heads) takes the same tensors without complaint and computes something else:
    wrong = load_backbone(
        "slip-vit-s16-yfcc15m-25ep", str(path), text_tower=TINY_TEXT, num_classes=16, num_heads=6, **tiny
    )
    x = images()
    with torch.no_grad():
        assert max_abs(wrong.embed_image(x), backbone.embed_image(x)) > 1e-3


def test_clip_from_slip_repo(tmp_path):
    visual = perturb(reference_vit(), seed=5)
    container, projection, text = slip_checkpoint(visual, with_ssl_head=False)
    path = tmp_path / "clip_base_cc3m_40ep.pt"
    torch.save(container, path)
    backbone = load_backbone(
        "clip-vit-b16-cc3m-40ep-slip", str(path), text_tower=TINY_TEXT, num_classes=16, **TINY_VIT
    )
    compare_vision(backbone, visual, "clip-slip-repo-image", projection=projection)
    compare_text(backbone, text, "clip-slip-repo-text")
