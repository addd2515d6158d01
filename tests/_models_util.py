"""Shared pieces of the tests/test_models_*.py files: tiny sizes, perturbation, comparisons."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from harmony_bench.cards import BackboneCard, get_card

TOL = 1e-5
TEXTS = ["a photo of a cat.", "itap of a dog.", "a diagram of a tiny transformer"]
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
TINY_TEXT = {"embed_dim": 16, "width": 32, "heads": 2, "layers": 2}


def perturb(module: nn.Module, scale: float = 0.05, seed: int = 1) -> nn.Module:
    """Add noise to every parameter so that zero/one-initialised ones (LN, biases, tokens) are distinct."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return module.eval()


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_abs(a: torch.Tensor | list[torch.Tensor], b: torch.Tensor | list[torch.Tensor]) -> float:
    if isinstance(a, list):
        assert len(a) == len(b)
        return max(max_abs(x, y) for x, y in zip(a, b, strict=True))
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def report(family: str, **diffs: float) -> None:
    """Print the measured differences (``pytest -s | grep MAXDIFF`` collects them) and check them."""
    print("MAXDIFF", family, " ".join(f"{k}={v:.3g}" for k, v in diffs.items()))
    for name, value in diffs.items():
        assert value <= TOL, f"{family} {name}: max |ours - reference| = {value} > {TOL}"


def card_with(name: str, **checkpoint_changes: object) -> BackboneCard:
    """A shipped card with some ``checkpoint`` fields changed (e.g. converter options)."""
    card = get_card(name)
    return dataclasses.replace(card, checkpoint={**card.checkpoint, **checkpoint_changes})


def save_torchscript(module: nn.Module, example: torch.Tensor, path, half: bool = False) -> None:
    """Trace ``module`` and save the archive (optionally in fp16, as OpenAI's releases are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the archive format is the point
        traced = torch.jit.trace(copy.deepcopy(module), (example,), check_trace=False)
        torch.jit.save(traced.half() if half else traced, str(path))


def reference_vit(**flags: object) -> nn.Module:
    """A perturbed timm ViT with the given flags: the reference network that the official files hold."""
    import timm

    torch.manual_seed(0)
    kwargs = {**TINY_VIT, "num_classes": 0, **flags}
    return perturb(timm.create_model("vit_base_patch16_224", pretrained=False, **kwargs))


def vit_outputs(model: nn.Module, x: torch.Tensor, indices=(0, 1)) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(normed cls token, intermediate NCHW maps) of a timm ViT reference."""
    with torch.no_grad():
        cls = model.forward_features(x)[:, 0]
        maps = model.forward_intermediates(x, indices=list(indices), intermediates_only=True)
    return cls, maps


def compare_vision(
    backbone, reference: nn.Module, family: str, projection: torch.Tensor | None = None
) -> None:
    """Image embedding, pooled features and intermediate maps of ``backbone`` vs a timm reference."""
    x = images()
    cls, maps = vit_outputs(reference, x)
    expected = normalize(cls @ projection if projection is not None else cls)
    with torch.no_grad():
        report(
            family,
            image=max_abs(backbone.embed_image(x), expected),
            cls=max_abs(backbone.pooled(x, "cls"), cls),
            features=max_abs(backbone.features(x, [0, 1]), maps),
        )


class ResidualBlock(nn.Module):
    """A CLIP text block written out here (not imported), with OpenAI's attribute names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))  # QuickGELU


class Resblocks(nn.Module):
    def __init__(self, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads) for _ in range(layers))


class TextEncoderReference(nn.Module):
    """CLIP-style causal text encoder (EOT = argmax pooling, ``x @ projection``), independent of open_clip.

    ``layout="openai"`` uses OpenAI/SLIP attribute names; ``layout="harmony"`` uses those of Harmony's
    ``TextEncoder`` (text_embedding, text_positional_embedding, backbone.resblocks, text_norm).
    """

    def __init__(
        self,
        layout: str,
        vocab: int = 49408,
        width: int = 32,
        heads: int = 2,
        layers: int = 2,
        embed: int = 16,
        context: int = 77,
    ) -> None:
        super().__init__()
        self.layout = layout
        names = {
            "openai": ("token_embedding", "positional_embedding", "transformer", "ln_final"),
            "harmony": ("text_embedding", "text_positional_embedding", "backbone", "text_norm"),
        }[layout]
        self.names = names
        setattr(self, names[0], nn.Embedding(vocab, width))
        setattr(self, names[1], nn.Parameter(torch.randn(context, width) * 0.01))
        setattr(self, names[2], Resblocks(width, heads, layers))
        setattr(self, names[3], nn.LayerNorm(width, eps=1e-5))
        self.text_projection = nn.Parameter(torch.randn(width, embed) * width**-0.5)
        self.register_buffer("mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        embedding, positions, transformer, final_norm = (getattr(self, n) for n in self.names)
        x = (embedding(tokens) + positions).permute(1, 0, 2)
        for block in transformer.resblocks:
            x = block(x, self.mask)
        x = final_norm(x.permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def text_reference(layout: str, vocab: int = 49408) -> TextEncoderReference:
    torch.manual_seed(0)
    return perturb(TextEncoderReference(layout, vocab=vocab), seed=2)


def compare_text(backbone, reference: TextEncoderReference, family: str) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    tokens = SimpleTokenizer(context_length=77)(TEXTS)
    with torch.no_grad():
        report(family, text=max_abs(backbone.embed_text(TEXTS), normalize(reference(tokens))))


def dino_style_vit_cls(
    state: dict, x: torch.Tensor, heads: int, patch: int, eps: float = 1e-6
) -> torch.Tensor:
    """The normed cls token of a DINO/iBOT/Harmony-style ViT, computed from its state dict by hand.

    Written from the published architecture (pre-norm blocks, qkv with bias, exact GELU, LayerNorm eps 1e-6,
    cls token concatenated before adding a pos-embed that has a cls row), independently of timm.
    """
    tokens = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), tokens], dim=1) + state["pos_embed"]
    dim = tokens.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = {k[len(f"blocks.{i}.") :]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(tokens, (dim,), p["norm1.weight"], p["norm1.bias"], eps)
        q, k, v = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (heads, dim // heads)).transpose(1, 2) for t in (q, k, v))
        attn = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)
        tokens = tokens + F.linear(out, p["attn.proj.weight"], p["attn.proj.bias"])
        h = F.layer_norm(tokens, (dim,), p["norm2.weight"], p["norm2.bias"], eps)
        h = F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
        tokens = tokens + F.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return F.layer_norm(tokens, (dim,), state["norm.weight"], state["norm.bias"], eps)[:, 0]
