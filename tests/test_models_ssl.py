"""iBOT, MAE, DINO and DINOv2 releases, saved in their official containers, vs timm references."""

import argparse

import pytest
import torch

from harmony_bench import load_backbone
from harmony_bench.models.checkpoint_io import CheckpointError, UntrustedCheckpointError

from ._models_util import TINY_VIT, compare_vision, images, max_abs, perturb, reference_vit, report

ARGS = argparse.Namespace(arch="vit_small", patch_size=16, lr=5e-4, out_dim=8192, output_dir="/ckpt")


def test_ibot_teacher_backbone_file(tmp_path):
    reference = reference_vit()
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)
    compare_vision(backbone, reference, "ibot-teacher-backbone")
    assert backbone.embed_dim == 64 and not backbone.has_projection


def test_ibot_student_file_drops_masked_embed(tmp_path):
    reference = reference_vit()
    path = tmp_path / "checkpoint_student.pth"
    torch.save({"state_dict": {**reference.state_dict(), "masked_embed": torch.zeros(1, 64)}}, path)
    backbone = load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)
    assert backbone.report.dropped == {"masked_embed": "masked-image-modeling token (pre-training only)"}
    compare_vision(backbone, reference, "ibot-student-backbone")


def full_checkpoint(teacher: torch.nn.Module, student: torch.nn.Module, loss_key: str) -> dict:
    """The layout of iBOT's / DINO's main_*.py ``save_dict`` (teacher unwrapped, student DDP-wrapped)."""
    head = {"head.mlp.0.weight": torch.randn(32, 64), "head.last_layer.weight_g": torch.ones(128, 1)}
    return {
        "student": {
            **{f"module.backbone.{k}": v for k, v in student.state_dict().items()},
            "module.backbone.masked_embed": torch.zeros(1, 64),
            **{f"module.{k}": v for k, v in head.items()},
        },
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.state_dict().items()}, **head},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "epoch": 100,
        "args": ARGS,
        loss_key: {"center": torch.zeros(1, 128)},
    }


@pytest.mark.parametrize(
    ("card", "loss_key"), [("ibot-vit-b16-in1k-full", "ibot_loss"), ("dino-vit-b16-in1k-full", "dino_loss")]
)
def test_full_checkpoints_load_the_teacher(tmp_path, card, loss_key):
    teacher = reference_vit()
    student = perturb(reference_vit(), seed=7)
    path = tmp_path / "checkpoint.pth"
    torch.save(full_checkpoint(teacher, student, loss_key), path)
    backbone = load_backbone(card, str(path), **TINY_VIT)
    compare_vision(backbone, teacher, card.split("-vit")[0] + "-full-checkpoint")
    dropped = backbone.report.dropped
    assert dropped["args"].startswith("training state") and dropped["student"].startswith("training state")
    assert dropped["teacher.head.mlp.0.weight"].endswith("(pre-training only)")


def test_full_checkpoint_student_branch_by_option(tmp_path):
    from ._models_util import card_with

    teacher, student = reference_vit(), perturb(reference_vit(), seed=7)
    path = tmp_path / "checkpoint.pth"
    torch.save(full_checkpoint(teacher, student, "ibot_loss"), path)
    card = card_with("ibot-vit-b16-in1k-full", options={"branch": "student"})
    backbone = load_backbone(card, str(path), **TINY_VIT)
    assert backbone.report.dropped["student.masked_embed"].startswith("masked-image-modeling")
    compare_vision(backbone, student, "ibot-full-checkpoint-student")


def test_full_checkpoint_with_unknown_pickles_needs_trust(tmp_path):
    import fractions

    reference = reference_vit()
    path = tmp_path / "checkpoint.pth"
    torch.save({**full_checkpoint(reference, reference, "ibot_loss"), "best": fractions.Fraction(3, 4)}, path)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        load_backbone("ibot-vit-b16-in1k-full", str(path), **TINY_VIT)
    backbone = load_backbone("ibot-vit-b16-in1k-full", str(path), trust_checkpoint=True, **TINY_VIT)
    compare_vision(backbone, reference, "ibot-full-checkpoint-trusted")


def test_wrong_container_names_the_converter(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(reference_vit().state_dict(), path)
    with pytest.raises(CheckpointError, match="'ibot-teacher-backbone' expects a top-level 'state_dict'"):
        load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)


def test_mae_pretrain_and_visualize_files(tmp_path):
    reference = reference_vit()
    with torch.no_grad():  # MAE's cls row is zero and the rest is sin-cos; any fixed values must load as is
        reference.pos_embed[:, 0].zero_()
    encoder = reference.state_dict()
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": encoder}, path)
    backbone = load_backbone("mae-vit-b16-in1k", str(path), **TINY_VIT)
    compare_vision(backbone, reference, "mae")

    visualize = tmp_path / "mae_visualize_vit_base.pth"
    decoder = {
        "mask_token": torch.zeros(1, 1, 32),
        "decoder_embed.weight": torch.randn(32, 64),
        "decoder_pos_embed": torch.zeros(1, 17, 32),
        "decoder_pred.weight": torch.randn(768, 32),
    }
    torch.save({"model": {**encoder, **decoder}}, visualize)
    backbone = load_backbone("mae-vit-b16-in1k", str(visualize), **TINY_VIT)
    assert set(backbone.report.dropped) == set(decoder)
    compare_vision(backbone, reference, "mae-with-decoder")


def test_dino_pretrain_file(tmp_path):
    reference = reference_vit()
    path = tmp_path / "dino_vitbase16_pretrain.pth"
    torch.save(reference.state_dict(), path)
    compare_vision(load_backbone("dino-vit-b16-in1k", str(path), **TINY_VIT), reference, "dino")


DINOV2_TINY = {"img_size": 56, "patch_size": 14, "embed_dim": 64, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize("registers", [False, True])
def test_dinov2(tmp_path, registers):
    flags = {**DINOV2_TINY, "init_values": 1e-5, "dynamic_img_size": True}
    if registers:
        flags.update(reg_tokens=4, no_embed_class=True)
    reference = reference_vit(**flags)
    state = dict(reference.state_dict())
    if (
        registers
    ):  # DINOv2 stores register tokens apart and a cls row in pos_embed; timm folds it into cls_token
        cls_row = torch.randn(1, 64) * 0.1
        state["register_tokens"] = state.pop("reg_token")
        state["cls_token"] = state["cls_token"] - cls_row
        state["pos_embed"] = torch.cat([cls_row[None], state["pos_embed"]], dim=1)
    state["mask_token"] = torch.zeros(1, 64)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    card = "dinov2-vit-b14-reg4-lvd142m" if registers else "dinov2-vit-s14-lvd142m"
    backbone = load_backbone(card, str(path), **DINOV2_TINY)
    x = images(size=56)
    with torch.no_grad():
        tokens = reference.forward_features(x)
        maps = reference.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        report(
            "dinov2" + ("-reg4" if registers else ""),
            cls=max_abs(backbone.pooled(x, "cls"), tokens[:, 0]),
            avgpool=max_abs(backbone.pooled(x, "avgpool"), tokens[:, reference.num_prefix_tokens :].mean(1)),
            features=max_abs(backbone.features(x, [0, 1]), maps),
        )
        assert backbone.features(images(size=42), [1])[0].shape[-2:] == (3, 3)  # dynamic input size
    assert "mask_token" in backbone.report.dropped


def test_timm_flags_match_a_hand_written_dino_style_vit(tmp_path):
    """The cards' timm flags compute what iBOT/DINO/Harmony's own ViT computes (checked without timm)."""
    from ._models_util import dino_style_vit_cls

    reference = reference_vit()
    path = tmp_path / "checkpoint_teacher.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = load_backbone("ibot-vit-b16-in1k", str(path), **TINY_VIT)
    x = images()
    with torch.no_grad():
        expected = dino_style_vit_cls(reference.state_dict(), x, heads=2, patch=8)
        report("dino-style-vit-by-hand", cls=max_abs(backbone.pooled(x, "cls"), expected))
