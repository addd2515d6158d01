"""Tiny stand-ins of real cards for the dense tasks: same timm architecture family, small sizes.

Each stand-in is a copy of a shipped card (so its family-specific timm options stay: QuickGELU and
pre-norm for CLIP, layer scale and registers for DINOv2, windows for Swin) with small widths and a
randomly initialised checkpoint saved in harmony-bench's own safetensors layout.  The converters
themselves are tested against the reference implementations in tests/test_models_*.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harmony_bench.cards import backbone_registry, get_card
from harmony_bench.models.build import build_image_model

# One shipped card per family the dense adapter must take.
FAMILY_CARDS = {
    "clip": "clip-vit-b16-openai-sd",
    "openclip": "openclip-vit-b16-laion2b",
    "slip": "slip-vit-s16-yfcc15m-25ep",
    "ibot": "ibot-vit-s16-in1k",
    "mae": "mae-vit-b16-in1k",
    "harmony": "harmony-vit-s16-cc3m",
    "maskclip": "maskclip-vit-b16-cc3m",
    "dino": "dino-vit-s16-in1k",
    "dinov2": "dinov2-vit-s14-lvd142m",
    "swin": "swin-b-p4w7-in1k",
}
TINY_VIT = {"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 64}
TINY_SWIN = {
    "embed_dim": 16,
    "depths": [1, 1, 1, 1],
    "num_heads": [1, 1, 2, 2],
    "window_size": 4,
    "img_size": 64,
}


def write_tiny_cards(card_dir: Path, monkeypatch) -> dict[str, str]:
    """Write one tiny card + checkpoint per family into ``card_dir``; return ``{family: card name}``."""
    from safetensors.torch import save_file

    card_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for family, source in FAMILY_CARDS.items():
        data = yaml.safe_load(Path(get_card(source).path).read_text(encoding="utf-8"))
        name = f"tiny-{source}"
        data["name"] = name
        data["architecture"]["overrides"] = {
            **data["architecture"].get("overrides", {}),
            **(TINY_SWIN if family == "swin" else TINY_VIT),
        }
        data["architecture"]["out_indices"] = [0, 1, 2, 3] if family == "swin" else [0, 1, 2, 3]
        data.pop("text_tower", None)
        weights = card_dir / f"{name}.safetensors"
        data["checkpoint"] = {
            "source": str(weights),
            "format": "safetensors",
            "converter": "timm",
            "sha256": None,
            "weights": "random init (test stand-in)",
        }
        (card_dir / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        names[family] = name
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(card_dir))
    backbone_registry.cache_clear()
    for name in names.values():
        model = build_image_model(get_card(name))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(card_dir / f"{name}.safetensors"))
    return names
