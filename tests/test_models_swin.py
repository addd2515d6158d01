"""Swin-B in Microsoft's release layout vs a timm reference (and timm's own Swin checkpoint filter)."""

import re

import timm
import torch
from timm.models.swin_transformer import checkpoint_filter_fn

from harmony_bench import load_backbone
from harmony_bench.models.converters import convert

from ._models_util import images, max_abs, perturb, report

TINY_SWIN = {
    "img_size": 64,
    "patch_size": 4,
    "embed_dim": 16,
    "depths": (2, 2, 2, 2),
    "num_heads": (1, 1, 2, 2),
    "window_size": 4,
}


def official_layout(model: torch.nn.Module) -> dict:
    """Microsoft's checkpoint layout: merging at the end of each stage, stored buffers, an ImageNet head."""
    state = {}
    for key, value in model.state_dict().items():
        key = re.sub(
            r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key
        )
        state[key] = value
    for name, module in model.named_modules():
        if hasattr(module, "relative_position_index"):
            state[f"{name}.relative_position_index"] = module.relative_position_index
        if getattr(module, "attn_mask", None) is not None:
            state[f"{name}.attn_mask"] = module.attn_mask
    state["head.weight"], state["head.bias"] = torch.randn(1000, model.num_features), torch.zeros(1000)
    return {"model": state}


def test_swin_official_release(tmp_path):
    torch.manual_seed(0)
    reference = perturb(timm.create_model("swin_base_patch4_window7_224", num_classes=0, **TINY_SWIN))
    container = official_layout(reference)
    assert any(k.endswith("attn_mask") for k in container["model"])  # shifted windows are exercised
    path = tmp_path / "swin_base_patch4_window7_224.pth"
    torch.save(container, path)
    backbone = load_backbone("swin-b-p4w7-in1k", str(path), **TINY_SWIN)

    converted, _ = convert("swin", container)
    timm_filtered = checkpoint_filter_fn(container, reference)
    assert set(converted) == {k for k in timm_filtered if not k.startswith("head.")}

    x = images(size=64)
    with torch.no_grad():
        maps = reference.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        ours = backbone.features(x)
        assert [m.shape[-1] for m in ours] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
        report(
            "swin",
            features=max_abs(ours, maps),
            avgpool=max_abs(backbone.pooled(x, "avgpool"), reference.forward_features(x).mean(dim=(1, 2))),
            image=max_abs(backbone.embed_image(x), torch.nn.functional.normalize(reference(x), dim=-1)),
        )
    assert backbone.report.dropped["head.weight"].startswith("ImageNet classifier")
    assert not backbone.is_vit
