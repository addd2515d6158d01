"""``load_backbone``: a card (plus an optional local checkpoint) in, a ready-to-evaluate ``Backbone`` out.

This module imports torch, timm and open_clip only inside functions, so
``harmony_bench.list_backbones()`` and the CLI's listings stay light.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.cards import BackboneCard, backbone_registry, get_card

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harmony_bench.models.report import LoadReport

log = logging.getLogger(__name__)

POOL_MODES = ("cls", "avgpool", "cls+avgpool")


def list_backbones() -> list[str]:
    """Names of all registered backbone cards, sorted."""
    return backbone_registry().names()


class Backbone:
    """A loaded backbone: the timm model, its text tower and tokenizer, preprocessing and the load report.

    Methods do not switch autograd off; wrap evaluation in ``torch.no_grad()``.
    """

    def __init__(
        self,
        card: BackboneCard,
        model: nn.Module,
        report: LoadReport,
        text_model: nn.Module | None = None,
        tokenizer: Any = None,
        input_size: int | None = None,
    ) -> None:
        self.card = card
        self.model = model
        self.report = report
        self.text_model = text_model
        self.tokenizer = tokenizer
        self.input_size = input_size

    def __repr__(self) -> str:
        return (
            f"Backbone({self.card.name!r}, {type(self.model).__name__}, text={self.text_model is not None})"
        )

    @property
    def is_vit(self) -> bool:
        """True for plain ViTs (token sequences with a cls token); False for hierarchical models (Swin)."""
        return hasattr(self.model, "blocks") and hasattr(self.model, "num_prefix_tokens")

    @property
    def has_projection(self) -> bool:
        """True when ``embed_image`` maps into a joint image-text space through a projection head."""
        return bool(getattr(self.model, "num_classes", 0))

    @property
    def embed_dim(self) -> int:
        """Size of ``embed_image`` outputs."""
        return int(self.model.num_classes) if self.has_projection else int(self.model.num_features)

    @property
    def preprocess(self) -> Any:
        """The eval transform (PIL image -> normalised tensor): the card's, at ``img_size`` if overridden."""
        from harmony_bench.models.preprocess import eval_transform

        return eval_transform(self.card.preprocessing, size=self.input_size)

    def to(self, *args: Any, **kwargs: Any) -> Backbone:
        """Move both towers (same arguments as ``nn.Module.to``)."""
        self.model.to(*args, **kwargs)
        if self.text_model is not None:
            self.text_model.to(*args, **kwargs)
        return self

    def eval(self) -> Backbone:
        """Put both towers in eval mode."""
        self.model.eval()
        if self.text_model is not None:
            self.text_model.eval()
        return self

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Final-normed features: ``(B, N, D)`` tokens for ViTs, ``(B, H, W, C)`` maps for Swin."""
        return self.model.forward_features(x)

    def pooled(self, x: torch.Tensor, mode: str = "cls") -> torch.Tensor:
        """Global features for linear probes and k-NN (after the final norm, before any projection).

        Args:
            x: Normalised images ``(B, 3, H, W)``.
            mode: ``cls`` (class token), ``avgpool`` (mean of patch tokens), or ``cls+avgpool``
                (concatenation, as DINO's and Harmony's linear eval with ``--avgpool_patchtokens``).
        """
        import torch

        if mode not in POOL_MODES:
            raise ValueError(f"pool mode must be one of {POOL_MODES}, got {mode!r}")
        tokens = self._tokens(x)
        if not self.is_vit:
            if mode != "avgpool":
                raise ValueError(f"{self.card.name} has no class token; use mode='avgpool'")
            return tokens.mean(dim=(1, 2))
        if mode == "cls":
            return tokens[:, 0]
        avg = tokens[:, self.model.num_prefix_tokens :].mean(dim=1)
        return avg if mode == "avgpool" else torch.cat([tokens[:, 0], avg], dim=-1)

    def embed_image(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings: in the joint space when the card has a projection, else cls/avg."""
        import torch.nn.functional as F

        if self.has_projection:
            z = self.model(x)
        else:
            z = self.pooled(x, "cls" if self.is_vit and self.model.has_class_token else "avgpool")
        return F.normalize(z, dim=-1)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, context_length)`` from open_clip's CLIP BPE tokenizer."""
        self._require_text()
        return self.tokenizer(list(texts))

    def embed_text(self, texts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings (strings, or token ids from ``tokenize``)."""
        import torch
        import torch.nn.functional as F

        self._require_text()
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        device = next(self.text_model.parameters()).device
        return F.normalize(self.text_model(tokens.to(device)), dim=-1)

    def features(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False
    ) -> list[torch.Tensor]:
        """Intermediate feature maps ``(B, C, H, W)`` (what UperNet and Mask R-CNN necks take).

        Args:
            x: Normalised images; any size divisible by the patch size for ViTs built with
                ``dynamic_img_size``, else the model's input size.
            indices: Block indices (ViT) or stage indices (Swin); default: the card's
                ``architecture.out_indices``, else all.
            norm: Apply the final norm to each map (iBOT/Harmony ``out_with_norm``).
        """
        if indices is None:
            indices = self.card.architecture.get("out_indices")
        if isinstance(indices, Iterable):
            indices = list(indices)
        return self.model.forward_intermediates(x, indices=indices, norm=norm, intermediates_only=True)

    def _require_text(self) -> None:
        if self.text_model is None and self.card.text_tower is not None:
            raise ValueError(
                f"backbone {self.card.name!r} was loaded without its text tower: the card reads it from a "
                "separate file (the Harmony repo's main_text_checkpoint.pth) and none was given; pass "
                "text_checkpoint=..., or use a card whose one file holds both towers (the '-full' card with "
                "the repo's checkpoint.pth, or a harmony-bench export)"
            )
        if self.text_model is None:
            raise ValueError(
                f"backbone {self.card.name!r} is vision-only (its card has no text_tower); "
                "embed_text needs a CLIP-style card (clip-*, slip-*, harmony-*, maskclip-*)"
            )


def load_backbone(
    name_or_card: str | BackboneCard,
    checkpoint: str | None = None,
    *,
    text_checkpoint: str | None = None,
    allow_missing: Iterable[str] = (),
    trust_checkpoint: bool = False,
    text_tower: dict[str, Any] | None = None,
    pos_embed_antialias: bool = True,
    **overrides: Any,
) -> Backbone:
    """Build a card's architecture and load its checkpoint exactly, or fail naming what did not load.

    Args:
        name_or_card: A card name (see ``list_backbones()``) or a ``BackboneCard``.
        checkpoint: Local path or URL overriding the card's ``checkpoint.source``.
        text_checkpoint: The separate text-tower file for cards that have one (Harmony-repo
            ``main_text_checkpoint.pth``), overriding ``checkpoint.text_source``.
        allow_missing: fnmatch patterns of model keys that may stay randomly initialised.
        trust_checkpoint: Allow full unpickling of the file (it can run code); off by default.
        text_tower: Overrides for the card's ``text_tower`` block (tests use tiny towers).
        pos_embed_antialias: Resample a position grid that differs from the model's with timm's antialiased
            bicubic (default); False: plain bicubic, ``align_corners=False``, as iBOT's/Harmony's dense
            ``load_checkpoint`` does.
        **overrides: ``timm.create_model`` keyword overrides, e.g. ``img_size=512``.

    Returns:
        The loaded :class:`Backbone`; ``.report`` says what was loaded, dropped and resized.
    """
    from harmony_bench.models.build import build_image_model, build_text_model, build_tokenizer
    from harmony_bench.models.report import LoadReport

    card = name_or_card if isinstance(name_or_card, BackboneCard) else get_card(name_or_card)
    model = build_image_model(card, overrides)
    text_model = tokenizer = None
    if card.text_tower is not None and not _text_file_missing(card, checkpoint, text_checkpoint):
        text_model = build_text_model(card.text_tower, text_tower)
        tokenizer = build_tokenizer({**card.text_tower, **(text_tower or {})})
    report = LoadReport(backbone=card.name, converter=card.checkpoint.get("converter"))
    if checkpoint is None and card.random_init:
        report.random_init = True
        text_keys = list(text_model.state_dict()) if text_model is not None else []
        report.missing = list(model.state_dict()) + [f"text.{k}" for k in text_keys]
    else:
        _load_into(
            card,
            model,
            text_model,
            report,
            checkpoint,
            text_checkpoint,
            allow_missing,
            trust_checkpoint,
            pos_embed_antialias,
        )
    log.info("%s", report.summary)
    size = overrides.get("img_size")
    input_size = int(size if isinstance(size, int) else size[0]) if size is not None else None
    return Backbone(card, model, report, text_model, tokenizer, input_size)


def _text_file_missing(card: BackboneCard, checkpoint: str | None, text_checkpoint: str | None) -> bool:
    """The card reads its text tower from a separate file (Harmony repo) and none was given.

    Image tasks never need that file: the backbone is then built without its text tower (and says so),
    instead of failing on the missing ``text.*`` weights.
    """
    spec = card.checkpoint
    if not spec.get("text_converter") or text_checkpoint or spec.get("text_source"):
        return False
    if checkpoint is None and card.random_init:
        return False
    log.info(
        "%s: no text checkpoint given (text_checkpoint=..., the Harmony repo's main_text_checkpoint.pth); "
        "loading the image tower only",
        card.name,
    )
    return True


def _read_and_convert(
    source: str, sha256: str | None, fmt: str | None, converter: str, options: dict[str, Any], trust: bool
) -> tuple[dict[str, Any], dict[str, str], str, str]:
    from harmony_bench.models.checkpoint_io import read_checkpoint, resolve_source, sha256_of, verify_sha256
    from harmony_bench.models.converters import convert
    from harmony_bench.models.hub_cards import hub_weights, is_hub_source

    if is_hub_source(source):  # timm: / open_clip: / hf-hub: cards: the library's file, from its cache
        path = hub_weights(source)
        if sha256:
            verify_sha256(path, sha256, f"{source} ({path})")
    else:
        path = resolve_source(source, sha256)
    raw = read_checkpoint(path, fmt=fmt, trust=trust)
    state, dropped = convert(converter, raw, options)
    return state, dropped, str(path), sha256 or sha256_of(path)


def _load_into(
    card: BackboneCard,
    model: nn.Module,
    text_model: nn.Module | None,
    report: LoadReport,
    checkpoint: str | None,
    text_checkpoint: str | None,
    allow_missing: Iterable[str],
    trust: bool,
    antialias: bool = True,
) -> None:
    from harmony_bench.models.checkpoint_io import CheckpointError
    from harmony_bench.models.report import IncompleteLoadError

    spec = card.checkpoint
    source = checkpoint or spec.get("source")
    if not source:
        raise ValueError(
            f"backbone {card.name!r} has no published checkpoint ({spec.get('weights')}); "
            "pass checkpoint=PATH (--checkpoint PATH) to a file in its format "
            f"{spec.get('format')!r} (converter {spec.get('converter')!r})"
        )
    if not spec.get("converter"):
        raise ValueError(
            f"backbone {card.name!r} has no converter (a random-init test card): it cannot load {source}; "
            "use the card of the checkpoint's family (`harmony-bench backbones inspect FILE`)"
        )
    sha = spec.get("sha256") if checkpoint is None else None
    report.source = source
    fmt, converter = _container(spec, checkpoint)
    report.converter = converter
    try:
        state, dropped, _, report.sha256 = _read_and_convert(
            source, sha, fmt, converter, spec.get("options") or {}, trust
        )
        _place(
            card,
            spec,
            model,
            text_model,
            report,
            state,
            dropped,
            text_checkpoint,
            allow_missing,
            trust,
            antialias,
        )
    except (CheckpointError, IncompleteLoadError) as exc:
        if type(exc) not in (CheckpointError, IncompleteLoadError) or not checkpoint:
            raise  # a download, checksum or trust problem: another card would not help
        from harmony_bench.models.inspection import fitting_cards_hint
        from harmony_bench.models.names import registered_and_store_cards

        hint = fitting_cards_hint(checkpoint, card, registered_and_store_cards, trust=trust)
        raise type(exc)(f"{exc} {hint}") from exc


# OpenAI CLIP in either container: the TorchScript release and a plain state dict of the same weights.
# A card of one loads the other too, through the other's converter (there is nothing to guess: the
# container is read from the file, and both converters produce the same keys).
CONTAINER_TWINS = {
    "openai-clip-torchscript": ("pytorch", "openai-clip"),
    "openai-clip": ("torchscript", "openai-clip-torchscript"),
}


def _container(spec: dict[str, Any], checkpoint: str | None) -> tuple[str | None, str]:
    """The card's (format, converter), or its twin's when the user's file is in the other container."""
    from harmony_bench.models.checkpoint_io import TORCHSCRIPT_FORMAT, is_torchscript

    fmt, converter = spec.get("format"), spec["converter"]
    if checkpoint is None or converter not in CONTAINER_TWINS:
        return fmt, converter
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        return fmt, converter
    twin_fmt, twin = CONTAINER_TWINS[converter]
    if is_torchscript(path) != (fmt == TORCHSCRIPT_FORMAT):
        kind = "a TorchScript archive" if twin_fmt == TORCHSCRIPT_FORMAT else "a plain state dict"
        log.info("%s is %s: reading it with the %s converter (the same weights)", path, kind, twin)
        return twin_fmt, twin
    return fmt, converter


def _place(
    card: BackboneCard,
    spec: dict[str, Any],
    model: nn.Module,
    text_model: nn.Module | None,
    report: LoadReport,
    state: dict[str, Any],
    dropped: dict[str, str],
    text_checkpoint: str | None,
    allow_missing: Iterable[str],
    trust: bool,
    antialias: bool = True,
) -> None:
    from harmony_bench.models.loading import adapt_to_model, place_weights, split_text, to_float32

    if spec.get("text_converter"):
        text_source = text_checkpoint or spec.get("text_source")
        if text_source:
            text_sha = spec.get("text_sha256") if text_checkpoint is None else None
            text_state, text_dropped, _, _ = _read_and_convert(
                text_source, text_sha, spec.get("format"), spec["text_converter"], {}, trust
            )
            state.update(text_state)
            dropped.update({f"[text file] {k}": r for k, r in text_dropped.items()})
    image, text = split_text(to_float32(state, report.cast))
    if text_model is None:
        dropped.update({k: "text tower (this card is vision-only)" for k in text})
        text = {}
    report.dropped = dropped
    adapt_to_model(image, model, report, antialias=antialias)
    modules = {"": model} if text_model is None else {"": model, "text.": text_model}
    allowed = [*(spec.get("allow_missing") or []), *allow_missing]
    place_weights(modules, {**image, **text}, report, allowed)
