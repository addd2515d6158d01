"""Harmony-repo checkpoints (Harmony and its MaskCLIP re-implementation) in all three file layouts."""

import argparse

import pytest
import torch

from harmony_bench import load_backbone
from harmony_bench.models.report import IncompleteLoadError

from ._models_util import (
    TINY_TEXT,
    TINY_VIT,
    compare_text,
    compare_vision,
    perturb,
    reference_vit,
    text_reference,
)

TEXT = {**TINY_TEXT, "vocab_size": 49409}
KW = {"text_tower": TEXT, "num_classes": 16, **TINY_VIT}


def harmony_parts():
    """(teacher ViT, contrastive_projection, main_vit dict, text encoder in Harmony's layout)."""
    teacher = reference_vit()
    projection = torch.randn(64, 16, generator=torch.Generator().manual_seed(4)) * 0.1
    main_vit = {**teacher.state_dict(), "contrastive_projection": projection}
    text = text_reference("harmony", vocab=49409)
    return teacher, projection, main_vit, text


def test_main_vit_and_main_text_files(tmp_path):
    teacher, projection, main_vit, text = harmony_parts()
    torch.save(main_vit, tmp_path / "main_vit_checkpoint.pth")
    torch.save(text.state_dict(), tmp_path / "main_text_checkpoint.pth")
    backbone = load_backbone(
        "harmony-vit-b16-cc3m",
        str(tmp_path / "main_vit_checkpoint.pth"),
        text_checkpoint=str(tmp_path / "main_text_checkpoint.pth"),
        **KW,
    )
    compare_vision(backbone, teacher, "harmony-main-vit", projection=projection)
    compare_text(backbone, text, "harmony-main-text")
    assert backbone.text_model.token_embedding.num_embeddings == 49409


def test_main_vit_without_text_file_loads_the_image_tower_only(tmp_path):
    """Image tasks never need main_text_checkpoint.pth: without it the text tower is left out, and says so."""
    teacher, projection, main_vit, _ = harmony_parts()
    torch.save(main_vit, tmp_path / "main_vit_checkpoint.pth")
    backbone = load_backbone("harmony-vit-b16-cc3m", str(tmp_path / "main_vit_checkpoint.pth"), **KW)
    assert backbone.text_model is None and not backbone.report.missing
    compare_vision(backbone, teacher, "harmony-main-vit-only", projection=projection)
    with pytest.raises(ValueError, match="without its text tower"):
        backbone.embed_text(["a photo of a cat."])
    with pytest.raises(
        IncompleteLoadError, match=r"text\.token_embedding\.weight"
    ):  # a text file must be whole
        broken = tmp_path / "main_text_checkpoint.pth"
        torch.save({"text_projection": torch.zeros(32, 16)}, broken)
        load_backbone(
            "harmony-vit-b16-cc3m",
            str(tmp_path / "main_vit_checkpoint.pth"),
            text_checkpoint=str(broken),
            **KW,
        )


def test_no_published_weights_says_so():
    with pytest.raises(ValueError, match="no published checkpoint.*--checkpoint"):
        load_backbone("harmony-vit-b16-cc3m", **KW)


def test_harmony_full_checkpoint(tmp_path):
    teacher, projection, main_vit, text = harmony_parts()
    student = perturb(reference_vit(), seed=9)
    student_text = perturb(text_reference("harmony", vocab=49409), seed=11)
    student_vit = {
        **student.state_dict(),
        "contrastive_projection": projection + 1,
        "masked_embed": torch.zeros(1, 64),
    }
    model = {}
    for prefix in (
        "image_encoder.",
        "student.backbone.",
        "discriminative_path.student.",
        "contrastive_path.image_backbone.",
    ):
        model.update({prefix + k: v for k, v in student_vit.items()})
    model.update({f"teacher.backbone.{k}": v for k, v in main_vit.items()})
    model.update({f"discriminative_path.teacher.backbone.{k}": v for k, v in main_vit.items()})
    model.update(
        {"teacher.head.mlp.0.weight": torch.randn(8, 64), "student.head.mlp.0.weight": torch.randn(8, 64)}
    )
    model.update({f"text_teacher.backbone.{k}": v for k, v in text.state_dict().items()})
    model.update({"text_teacher.distillation_head.mlp.0.weight": torch.randn(8, 16)})
    model.update({f"contrastive_path.text_backbone.{k}": v for k, v in student_text.state_dict().items()})
    model.update(
        {"contrastive_path.logit_scale": torch.tensor(2.66), "mlm_head.head.weight": torch.randn(49409, 32)}
    )
    model.update({"generative_path.decoder_pos_embed": torch.zeros(1, 17, 32)})
    container = {
        "model": model,
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 25,
        "args": argparse.Namespace(arch="vit_base", objective="clip_ibot_mae"),
        "disc_loss": {"center": torch.zeros(1, 8)},
        "fp16_scaler": {"scale": 1024.0},
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(container, path)
    backbone = load_backbone("harmony-vit-b16-cc3m-full", str(path), **KW)
    compare_vision(backbone, teacher, "harmony-full-checkpoint", projection=projection)
    compare_text(backbone, text, "harmony-full-checkpoint-text")
    assert backbone.report.dropped["model.student.head.mlp.0.weight"].startswith("other training modules")


def test_maskclip_files(tmp_path):
    teacher, projection, main_vit, text = harmony_parts()
    torch.save(main_vit, tmp_path / "main_vit_checkpoint.pth")
    torch.save(text.state_dict(), tmp_path / "main_text_checkpoint.pth")
    backbone = load_backbone(
        "maskclip-vit-b16-cc3m",
        str(tmp_path / "main_vit_checkpoint.pth"),
        text_checkpoint=str(tmp_path / "main_text_checkpoint.pth"),
        **KW,
    )
    compare_vision(backbone, teacher, "maskclip-main-vit", projection=projection)
    compare_text(backbone, text, "maskclip-main-text")

    model = {f"teacher.{k}": v for k, v in main_vit.items()}
    model.update({f"text_student.{k}": v for k, v in text.state_dict().items()})
    model.update({f"student.{k}": v + 1 for k, v in main_vit.items()})
    model.update({"mask_token": torch.zeros(1, 1, 64), "decoder_norm.weight": torch.ones(64)})
    torch.save(
        {"model": model, "epoch": 25, "args": argparse.Namespace(arch="vit_base")},
        tmp_path / "checkpoint.pth",
    )
    backbone = load_backbone("maskclip-vit-b16-cc3m-full", str(tmp_path / "checkpoint.pth"), **KW)
    compare_vision(backbone, teacher, "maskclip-full-checkpoint", projection=projection)
    compare_text(backbone, text, "maskclip-full-checkpoint-text")


def test_export_round_trip(tmp_path):
    """harmony-bench's own format: what `backbones convert` writes loads back identically."""
    from safetensors.torch import save_file

    teacher, projection, main_vit, text = harmony_parts()
    torch.save(main_vit, tmp_path / "main_vit_checkpoint.pth")
    torch.save(text.state_dict(), tmp_path / "main_text_checkpoint.pth")
    first = load_backbone(
        "harmony-vit-b16-cc3m",
        str(tmp_path / "main_vit_checkpoint.pth"),
        text_checkpoint=str(tmp_path / "main_text_checkpoint.pth"),
        **KW,
    )
    state = {**first.model.state_dict(), **{f"text.{k}": v for k, v in first.text_model.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "harmony.safetensors"))
    backbone = load_backbone("harmony-vit-b16-cc3m-export", str(tmp_path / "harmony.safetensors"), **KW)
    compare_vision(backbone, teacher, "harmony-export", projection=projection)
    compare_text(backbone, text, "harmony-export-text")
