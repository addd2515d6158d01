"""imagenet-eval: a classifier checkpoint in MAE's fine-tuned layout on synthetic ImageNet, checked against an
independent computation (timm + torchvision directly, no harmony-bench code), and the refusals."""

from functools import partial
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.models.checkpoint_io import CheckpointError
from harmony_bench.models.converters import convert
from harmony_bench.protocols import get_task
from harmony_bench.results import validate_record

from ._imagenet_util import run_cli, use_cards, value, write_card

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "qkv_bias": True, "img_size": 32}
TINY = {**TINY, "patch_size": 8, "global_pool": "avg", "fc_norm": True, "num_classes": 10}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The default synthetic ImageNet (10 classes; 20 val images, 64 px)."""
    return synthesize("imagenet", tmp_path_factory.mktemp("imagenet") / "root").root


def tiny_classifier() -> nn.Module:
    """A timm ViT in MAE's fine-tuned layout (global pool, fc_norm, no final norm), seeded."""
    torch.manual_seed(3)
    model = timm.create_model(
        "vit_base_patch16_224", pretrained=False, norm_layer=partial(nn.LayerNorm, eps=1e-6), **TINY
    )
    with torch.no_grad():  # a head with some spread, so the logits are not near-ties
        model.head.weight.normal_(std=0.5)
    return model.eval()


@pytest.fixture()
def classifier(tmp_path, monkeypatch):
    """``(card, checkpoint path)``: a user card derived from mae-vit-b16-in1k-ft, a {'model': ...} file."""
    cards = tmp_path / "cards"
    name = write_card(
        cards,
        "mae-vit-b16-in1k-ft",
        "tiny-mae-ft",
        architecture={"overrides": {k: v for k, v in TINY.items()}},
        preprocessing={"input_size": 32, "resize": 36, "crop": 32},
    )
    use_cards(monkeypatch, cards)
    path = tmp_path / "mae_finetuned_tiny.pth"
    torch.save({"model": tiny_classifier().state_dict()}, path)
    return name, path


def independent_logits(root: Path, model: nn.Module) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """MAE's eval transform written out: Resize(36, bicubic), CenterCrop(32), ImageNet mean/std."""
    transform = transforms.Compose(
        [
            transforms.Resize(36, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    wnids = sorted(p.name for p in (root / "val").iterdir() if p.is_dir())
    paths, labels = [], []
    for index, wnid in enumerate(wnids):
        for path in sorted((root / "val" / wnid).iterdir()):
            paths.append(str(path))
            labels.append(index)
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        logits = model(images)
    return paths, logits, torch.tensor(labels)


def test_eval_smoke_equals_an_independent_computation_on_the_same_logits(root, classifier, tmp_path):
    card, checkpoint = classifier
    out = tmp_path / "records"
    record = run_cli("imagenet-eval", root, out, "--checkpoint", str(checkpoint), backbone=card)
    assert validate_record(record) == [] and record["status"]["state"] == "completed"
    saved = torch.load(record["artifacts"]["val_logits"], weights_only=True)

    reference = tiny_classifier()
    reference.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    paths, logits, labels = independent_logits(root, reference.eval())
    assert saved["paths"] == paths and torch.equal(saved["labels"], labels)
    assert torch.allclose(saved["logits"], logits, atol=1e-5)

    # accuracy from the logits, the way MAE's evaluate() does it (timm accuracy: topk of the logits)
    top5 = logits.topk(5, dim=1).indices
    top1_acc = 100.0 * int((top5[:, 0] == labels).sum()) / len(labels)
    top5_acc = 100.0 * int((top5 == labels[:, None]).any(dim=1).sum()) / len(labels)
    assert value(record, "top1") == pytest.approx(top1_acc, abs=1e-9)
    assert value(record, "top5") == pytest.approx(top5_acc, abs=1e-9)
    assert value(record, "loss") == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    assert value(record, "data.val_images") == 20
    assert record["artifacts"]["precision"] == "fp32"  # the CPU never autocasts fp16


def test_a_backbone_without_a_classifier_head_is_refused_before_the_run(root, tmp_path, capsys):
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "imagenet-eval", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(root), "--output", str(tmp_path)]) == 2
    assert "no classifier head" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))  # a usage error, not a failed run


def test_a_classifier_for_other_classes_is_refused(root, classifier, tmp_path, monkeypatch, capsys):
    cards = tmp_path / "more-cards"
    write_card(
        cards, "mae-vit-b16-in1k-ft", "tiny-mae-ft-7", architecture={"overrides": {**TINY, "num_classes": 7}}
    )
    use_cards(monkeypatch, cards)
    argv = ["run", "--backbone", "tiny-mae-ft-7", "--task", "imagenet-eval", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(root), "--output", str(tmp_path / "out")]) == 2
    assert "predicts 7 classes but" in capsys.readouterr().err


def test_mae_finetuned_converter_keeps_the_head_and_refuses_a_pretraining_file():
    state = tiny_classifier().state_dict()
    converted, dropped = convert("mae-finetuned", {"model": state})
    assert {"fc_norm.weight", "head.weight", "head.bias"} <= set(converted) and not dropped
    assert "norm.weight" not in converted  # MAE's models_vit deletes the final norm
    pretrain = {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}
    with pytest.raises(CheckpointError, match="fine-tuned MAE classifier"):
        convert("mae-finetuned", {"model": pretrain})


@pytest.mark.parametrize(
    ("card", "dim", "depth", "arch", "reference"),
    [
        ("mae-vit-b16-in1k-ft", 768, 12, "vit-b-16", (83.664, 96.530, 0.731)),
        ("mae-vit-l16-in1k-ft", 1024, 24, "vit-l-16", (85.952, 97.570, 0.646)),
        ("mae-vit-h14-in1k-ft", 1280, 32, "vit-h-14", (86.928, 98.088, 0.584)),
    ],
)
def test_mae_finetuned_cards_build_the_released_layout(card, dim, depth, arch, reference):
    """FINETUNE.md:L16-L28: the three files and their reference accuracies, and L38/L47/L56 the --eval output
    (Acc@1, Acc@5, loss), as results/reported/published.csv holds them; timm holds exactly their keys."""
    from harmony_bench.cards import get_card
    from harmony_bench.models.build import timm_kwargs
    from harmony_bench.suites.reported import load_reported

    spec = get_card(card)
    assert spec.checkpoint["converter"] == "mae-finetuned"
    assert spec.checkpoint["source"].startswith(
        "https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_"
    )
    reported = load_reported().set_index("id")
    row = f"mae-{arch}-in-1k-ep-finetuned-imagenet-eval-{{}}-mae"
    published = tuple(reported.loc[row.format(metric), "value"] for metric in ("top1", "top5", "loss"))
    assert published == reference
    with torch.device("meta"):
        model = timm.create_model(spec.timm_model, pretrained=False, **timm_kwargs(spec))
    keys = set(model.state_dict())
    assert "norm.weight" not in keys and {"fc_norm.weight", "fc_norm.bias"} <= keys
    assert model.head.weight.shape == (1000, dim) and len(model.blocks) == depth
    assert model.fc_norm.eps == 1e-6


def test_eval_paper_preset_is_mae_main_finetune_eval():
    """MAE util/datasets.py:L52-L64 (Resize(int(224 / (224 / 256)) = 256, BICUBIC), CenterCrop(224),
    IMAGENET_DEFAULT_MEAN/STD); engine_finetune.py:L115 (autocast); FINETUNE.md:L34 (--batch_size 16)."""
    config = get_task("imagenet-eval").resolve_config("paper")
    assert config["transform"] == {"resize": int(224 / (224 / 256)), "crop": 224, "interpolation": "bicubic"}
    assert config["normalize"] == "imagenet" and config["amp"] == "fp16"
    assert config["eval"]["batch_size"] == 16 and config["eval"]["num_workers"] == 10
