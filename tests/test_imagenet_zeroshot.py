"""imagenet-zeroshot on a tiny open_clip checkpoint, loaded through a card, agrees with open_clip itself."""

import pytest
import torch
import torch.nn.functional as F
from open_clip import tokenize
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from open_clip.transform import image_transform
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torchvision.datasets import ImageFolder

from harmony_bench import load_backbone
from harmony_bench.data.imagenet import class_names
from harmony_bench.data.synth import synthesize
from harmony_bench.tasks.imagenet.common import preprocessing_for
from harmony_bench.tasks.imagenet.zeroshot import SLIP_IMAGENET_TEMPLATES, build_classifier, image_logits

from ._imagenet_util import TINY_PREPROCESSING, run_cli, use_cards, value, write_card
from ._models_util import TINY_TEXT, TINY_VIT, max_abs, perturb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthesize("imagenet", tmp_path_factory.mktemp("in") / "root", n=40, size=48).root


@pytest.fixture
def tiny_clip(tmp_path, monkeypatch):
    """(open_clip reference model, its checkpoint in open_clip's hub layout, a user card for it)."""
    torch.manual_seed(0)
    reference = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2),
        quick_gelu=False,
    )
    reference = perturb(reference, scale=0.2)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(reference.state_dict(), path)
    cards = tmp_path / "cards"
    name = write_card(
        cards,
        "openclip-vit-b16-laion2b",
        "tiny-openclip",
        architecture={"overrides": {**TINY_VIT, "pre_norm": True, "act_layer": "gelu"}, "projection_dim": 16},
        preprocessing=TINY_PREPROCESSING,
        text_tower=TINY_TEXT,
    )
    use_cards(monkeypatch, cards)
    return reference, path, name


def reference_zero_shot(reference, root, templates):
    """open_clip's zero-shot on the val split: its classifier, its preprocessing, 100 * cosine logits."""
    names = class_names(root)
    classifier = build_zero_shot_classifier(reference, tokenize, names, templates, num_classes_per_batch=None)
    data = ImageFolder(
        root / "val", transform=image_transform(32, is_train=False, mean=CLIP_MEAN, std=CLIP_STD)
    )
    images = torch.stack([image for image, _ in data])
    labels = torch.tensor([label for _, label in data])
    with torch.no_grad():
        logits = 100.0 * F.normalize(reference.encode_image(images), dim=-1) @ classifier
    return classifier, images, labels, logits


@pytest.mark.parametrize("templates", [SLIP_IMAGENET_TEMPLATES, OPENAI_IMAGENET_TEMPLATES])
def test_classifier_and_logits_equal_open_clip(root, tiny_clip, templates):
    reference, path, name = tiny_clip
    ref_classifier, images, _, ref_logits = reference_zero_shot(reference, root, list(templates))
    backbone = load_backbone(name, str(path)).eval()
    assert preprocessing_for(backbone.card.preprocessing, None)["crop"] == 32
    with torch.no_grad():
        classifier = build_classifier(backbone, class_names(root), list(templates), torch.device("cpu"))
        logits = image_logits(backbone, images, classifier, 100.0)
    assert max_abs(classifier, ref_classifier) <= 1e-5
    assert max_abs(logits, ref_logits) <= 1e-3  # logits are 100 x cosine
    assert torch.equal(logits.argmax(dim=-1), ref_logits.argmax(dim=-1))


def test_cli_top1_equals_open_clip(root, tiny_clip, tmp_path):
    reference, path, name = tiny_clip
    _, _, labels, ref_logits = reference_zero_shot(reference, root, list(SLIP_IMAGENET_TEMPLATES))
    record = run_cli(
        "imagenet-zeroshot", root, tmp_path / "records", "--checkpoint", str(path), backbone=name
    )
    expected_top1 = 100.0 * (ref_logits.argmax(dim=-1) == labels).float().mean().item()
    expected_top5 = 100.0 * (ref_logits.topk(5).indices == labels[:, None]).any(dim=-1).float().mean().item()
    assert value(record, "top1") == pytest.approx(expected_top1)
    assert value(record, "top5") == pytest.approx(expected_top5)
    assert value(record, "data.val_images") == len(labels)
    assert record["backbone"]["checkpoint"]["sha256"] is not None


def test_paper_preset_resizes_as_slip_and_harmony_and_the_clip_preset_as_clip():
    """SLIP/Harmony eval_zeroshot.py: Resize(224) (torchvision's default: bilinear) + CenterCrop(224).

    CLIP's _transform: Resize(224, interpolation=BICUBIC) + CenterCrop(224).  Written out with torchvision.
    """
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    from harmony_bench.cards import get_card
    from harmony_bench.models.preprocess import eval_transform
    from harmony_bench.protocols import get_task

    spec = get_task("imagenet-zeroshot")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 257, 3), dtype=np.uint8))
    for card_name in ("slip-vit-b16-yfcc15m-25ep", "clip-vit-b16-openai"):  # a bilinear and a bicubic card
        card = get_card(card_name)
        normalize = transforms.Normalize(card.preprocessing["mean"], card.preprocessing["std"])
        slip = transforms.Compose(
            [transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
        )
        clip = transforms.Compose(
            [
                transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                normalize,
            ]
        )
        for preset, reference in (("paper", slip), ("clip", clip)):
            transform = spec.resolve_config(preset)["transform"]
            ours = eval_transform(preprocessing_for(card.preprocessing, transform))
            assert torch.equal(ours(image), reference(image)), (card_name, preset)
