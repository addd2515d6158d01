"""``--init``: continue training from Harmony-repo files (main_vit + main_text)."""

import torch

from harmony_bench.cli import main
from harmony_bench.pretrain.harmony_repo import load_harmony_repo
from harmony_bench.pretrain.model import PretrainModel

from ._models_util import TextEncoderReference, perturb, reference_vit
from ._pretrain_util import CAPTIONS, tiny_cfg, tokenizer


def harmony_files(tmp_path):
    """A Harmony-layout EMA teacher ViT (+ contrastive_projection) and text encoder at the smoke sizes."""
    vit = reference_vit(mlp_ratio=2.0)
    projection = torch.randn(64, 32, generator=torch.Generator().manual_seed(3)) * 0.1
    torch.save(
        {**vit.state_dict(), "contrastive_projection": projection}, tmp_path / "main_vit_checkpoint.pth"
    )
    torch.manual_seed(0)
    text = perturb(
        TextEncoderReference("harmony", vocab=49409, width=32, heads=2, layers=2, embed=32, context=32)
    )
    torch.save(text.state_dict(), tmp_path / "main_text_checkpoint.pth")
    return vit, projection, text


def test_main_vit_and_text_initialise_student_and_teacher(tmp_path):
    vit, projection, text = harmony_files(tmp_path)
    cfg = tiny_cfg("clip")
    model = PretrainModel(cfg).eval()
    load_harmony_repo(
        model, str(tmp_path / "main_vit_checkpoint.pth"), str(tmp_path / "main_text_checkpoint.pth")
    )
    x = torch.randn(2, 3, 32, 32)
    ids = tokenizer(cfg)(list(CAPTIONS[:3]))
    with torch.no_grad():
        cls = vit.forward_features(x)[:, 0]
        for towers in (model.student, model.teacher):
            ours = towers.vit.forward_features(x)
            assert torch.allclose(ours[:, 0], cls, atol=1e-5)
            assert torch.allclose(towers.vit.forward_head(ours), cls @ projection, atol=1e-5)
            assert torch.allclose(towers.text(ids), text(ids), atol=1e-5)


def test_cli_init_continues_from_harmony_files(tmp_path, capsys):
    harmony_files(tmp_path)
    from harmony_bench.data.synth import captions

    captions.write(tmp_path / "c", n=8, size=40)
    rc = main(
        ["pretrain", "--method", "clip", "--preset", "smoke", "--data", f"cc3m:{tmp_path / 'c' / 'pairs'}"]
        + ["--output", str(tmp_path / "run"), "--batch-size", "8", "--max-steps", "1", "--device", "cpu"]
        + ["--init", str(tmp_path / "main_vit_checkpoint.pth")]
        + ["--init-text", str(tmp_path / "main_text_checkpoint.pth")]
    )
    assert rc == 0
    assert '"steps": 1' in capsys.readouterr().out
