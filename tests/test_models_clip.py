"""CLIP in OpenAI's layout (TorchScript archive, plain state dict) and open_clip's, vs open_clip."""

import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from harmony_bench import load_backbone
from harmony_bench.models.checkpoint_io import CheckpointError

from ._models_util import (
    TEXTS,
    TINY_TEXT,
    TINY_VIT,
    card_with,
    images,
    max_abs,
    normalize,
    perturb,
    report,
    save_torchscript,
)

OVERRIDES = {**TINY_VIT, "num_classes": 16}


def tiny_open_clip(quick_gelu: bool) -> CLIP:
    torch.manual_seed(0)
    model = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
        quick_gelu=quick_gelu,
    )
    return perturb(model)


class OpenAIArchive(nn.Module):
    """The attribute layout of OpenAI's TorchScript CLIP (weights at the top level plus metadata)."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        for name in ("visual", "transformer", "token_embedding", "ln_final"):
            setattr(self, name, getattr(clip, name))
        for name in ("positional_embedding", "text_projection", "logit_scale"):
            setattr(self, name, getattr(clip, name))
        for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
            self.register_buffer(name, torch.tensor(value))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


def compare(backbone, reference: CLIP, family: str) -> None:
    x = images()
    tokens = SimpleTokenizer(context_length=77)(TEXTS)
    with torch.no_grad():
        ref_features = reference.visual.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        report(
            family,
            image=max_abs(backbone.embed_image(x), normalize(reference.encode_image(x))),
            features=max_abs(backbone.features(x, [0, 1]), ref_features["image_intermediates"]),
            text=max_abs(backbone.embed_text(TEXTS), normalize(reference.encode_text(tokens))),
        )


def test_openai_torchscript_archive(tmp_path):
    reference = tiny_open_clip(quick_gelu=True).half().float()  # the archive stores fp16 weights
    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(OpenAIArchive(reference), images(), path, half=True)
    backbone = load_backbone("clip-vit-b16-openai", str(path), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "clip-openai-torchscript")
    assert backbone.report.dropped["input_resolution"].startswith("TorchScript")
    assert "logit_scale" in backbone.report.dropped
    assert not backbone.report.missing and not backbone.report.unexpected


def test_openai_plain_state_dict(tmp_path):
    reference = tiny_open_clip(quick_gelu=True)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(reference.state_dict(), path)
    backbone = load_backbone("clip-vit-b16-openai-sd", str(path), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "clip-openai-state-dict")
    assert backbone.model.norm_pre.weight.shape == (64,)  # ln_pre landed in norm_pre
    assert backbone.model.patch_embed.proj.bias is None


def test_open_clip_hub_file_and_training_checkpoint(tmp_path):
    reference = tiny_open_clip(quick_gelu=False)
    hub = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(reference.state_dict(), hub)
    backbone = load_backbone("openclip-vit-b16-laion2b", str(hub), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "open-clip")

    train = tmp_path / "epoch_32.pt"
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save(
        {"epoch": 32, "name": "run", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}},
        train,
    )
    card = card_with("openclip-vit-b16-laion2b", options={"container": "state_dict", "prefix": "module."})
    backbone = load_backbone(card, str(train), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "open-clip-training-checkpoint")
    assert backbone.report.dropped["optimizer"].startswith("training state")


def test_one_card_reads_both_openai_containers(tmp_path):
    """The TorchScript release and a plain state dict of the same OpenAI CLIP load through either card."""
    reference = tiny_open_clip(quick_gelu=True)
    plain = tmp_path / "plain.pt"
    torch.save(reference.state_dict(), plain)
    backbone = load_backbone("clip-vit-b16-openai", str(plain), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "clip-openai-torchscript-card-plain-file")
    assert backbone.report.converter == "openai-clip"
    archive = tmp_path / "archive.pt"
    save_torchscript(OpenAIArchive(reference), images(), archive)
    backbone = load_backbone("clip-vit-b16-openai-sd", str(archive), text_tower=TINY_TEXT, **OVERRIDES)
    compare(backbone, reference, "clip-openai-sd-card-torchscript-file")
    assert backbone.report.converter == "openai-clip-torchscript"


def test_format_mismatches_are_explained(tmp_path):
    """Cards without a twin container still refuse a TorchScript archive, saying which card reads one."""
    reference = tiny_open_clip(quick_gelu=False)
    archive = tmp_path / "archive.pt"
    save_torchscript(OpenAIArchive(reference), images(), archive)
    with pytest.raises(CheckpointError, match="TorchScript archive; load it through a card"):
        load_backbone("openclip-vit-b16-laion2b", str(archive), text_tower=TINY_TEXT, **OVERRIDES)
