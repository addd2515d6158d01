"""Inside the segmentor that an ADE20K run builds, the backbone computes the original network's features.

The checkpoint is an iBOT teacher file (the official ``{'state_dict': ...}`` layout) saved at a 32 px
grid; the run's config asks for a larger input, so the position embeddings are resampled once on load, as
iBOT's ``mmcv_custom/checkpoint.py`` does.  After mmengine's ``init_weights`` (which the Runner calls before
training), the segmentor's backbone must still give the saved network's block outputs at that grid.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harmony_bench.cards import get_card
from harmony_bench.models import load_backbone
from harmony_bench.protocols import get_task
from harmony_bench.runner import RunOptions, TaskContext
from tests._models_util import TINY_VIT, reference_vit

pytestmark = pytest.mark.mm
CARD = "ibot-vit-b16-in1k"
INDICES = [0, 1, 1, 0]


def segmentor_config(checkpoint: Path, size: int):
    """The smoke run's mmengine config for ``CARD`` with a tiny width (what ``run`` would train)."""
    from harmony_bench.tasks.ade20k.upernet import build_config

    width = TINY_VIT["embed_dim"]
    tiny = {k: v for k, v in TINY_VIT.items() if k != "img_size"}
    options = {
        "+model.backbone.model_overrides": tiny,  # not in the protocol: added on purpose ('+')
        "model.backbone.img_size": size,
        "model.backbone.out_indices": INDICES,
        "model.neck.embed_dim": width,
        "model.decode_head.in_channels": [width] * 4,
        "model.auxiliary_head.in_channels": width,
    }
    spec = get_task("ade20k")
    context = TaskContext(
        card=get_card(CARD),
        task=spec,
        config=spec.resolve_config("smoke", {"cfg_options": options}),
        options=RunOptions(checkpoint=str(checkpoint)),
        work_dir=Path("work"),
    )
    return build_config(context)


def test_segmentor_backbone_equals_the_saved_network_and_the_registry(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from harmony_bench.dense import register_into

    register_into("mmseg")
    init_default_scope("mmseg")
    reference = reference_vit(dynamic_img_size=True).eval()  # the network in the official file, 32 px
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    cfg = segmentor_config(path, size=64)
    assert cfg.model.backbone.checkpoint == str(path) and cfg.model.backbone.out_with_norm is True
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()  # the Runner does this; the converted weights must survive it
    segmentor.eval()
    assert segmentor.backbone.model.pos_embed.shape[1] == 1 + 8 * 8  # resampled from 4 x 4 on load

    # the saved network at the protocol's grid: its 4 x 4 position grid resampled to 8 x 8 as iBOT's
    # load_checkpoint does (bicubic, align_corners=False; bytedance/ibot@da316d8
    # evaluation/semantic_segmentation/mmcv_custom/checkpoint.py:L436-L457), written out
    state = reference.state_dict()
    extra, tokens = state["pos_embed"][:, :1], state["pos_embed"][:, 1:]
    tokens = tokens.reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    tokens = torch.nn.functional.interpolate(tokens, size=(8, 8), mode="bicubic", align_corners=False)
    state["pos_embed"] = torch.cat((extra, tokens.permute(0, 2, 3, 1).flatten(1, 2)), dim=1)
    at_grid = reference_vit(img_size=64, dynamic_img_size=True).eval()
    at_grid.load_state_dict(state)
    registry = load_backbone(CARD, str(path), **TINY_VIT)  # the loaded weights themselves (32 px grid)
    assert torch.equal(
        registry.model.blocks[0].attn.qkv.weight, segmentor.backbone.model.blocks[0].attn.qkv.weight
    )

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = segmentor.backbone(x)
        from_reference = at_grid.forward_intermediates(x, indices=[0, 1], norm=True, intermediates_only=True)
        pyramid = segmentor.extract_feat(x)
    want = [from_reference[i] for i in INDICES]
    for ours, original in zip(got, want, strict=True):
        assert ours.shape == (2, TINY_VIT["embed_dim"], 8, 8)
        assert (ours - original).abs().max().item() <= 1e-5
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(32, 32), (16, 16), (8, 8), (4, 4)]
