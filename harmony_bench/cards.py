"""Backbone cards: one YAML file per released checkpoint, loaded into a registry.

A card says everything needed to rebuild a backbone exactly: the timm
architecture and its overrides, where the checkpoint comes from and which
converter maps its keys onto timm, which weights inside it (teacher, student,
EMA), the preprocessing the checkpoint was trained with, the text tower for
zero-shot, license and paper.  Nothing is guessed from checkpoint key names:
the card names the converter.

Published numbers are not card data: they live once, with their sources, in
``results/reported/published.csv`` (read by the suites and the leaderboard).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harmony_bench.paths import REPO_ROOT, backbone_card_dirs
from harmony_bench.registry import Registry
from harmony_bench.yaml_io import DataFileError, check_keys, load_mapping

log = logging.getLogger(__name__)

REQUIRED_KEYS = {"name", "family", "description", "architecture", "checkpoint", "preprocessing", "license"}
OPTIONAL_KEYS = {"text_tower", "paper", "notes", "tags"}
# Keys cards once had, with where their content lives now (a clearer error than "unknown key").
MOVED_KEYS = {
    "published": "published numbers live in results/reported/published.csv (one row per number, with its "
    "source), which the suites and the leaderboard read; add a row there and remove the block from the card",
}
CHECKPOINT_KEYS = {"source", "format", "converter", "weights", "sha256"}
# options: keyword arguments for the converter; allow_missing: fnmatch patterns of model keys the
# checkpoint does not hold; text_*: a separate text-tower file (Harmony-repo main_text_checkpoint.pth);
# files: other released files of the same weights (e.g. the full training checkpoint), for reference.
CHECKPOINT_OPTIONAL_KEYS = {
    "options",
    "allow_missing",
    "text_source",
    "text_converter",
    "text_sha256",
    "files",
}
ARCHITECTURE_KEYS = {"timm_model", "overrides", "norm_eps", "projection_dim", "out_indices"}
TEXT_TOWER_KEYS = {
    "embed_dim",
    "context_length",
    "vocab_size",
    "width",
    "heads",
    "layers",
    "mlp_ratio",
    "quick_gelu",
    "norm_eps",
    "tokenizer",
}


@dataclass(frozen=True)
class BackboneCard:
    """One released checkpoint (or a random-init test backbone), as declared in ``backbones/*.yaml``."""

    name: str
    family: str
    description: str
    architecture: dict[str, Any]
    checkpoint: dict[str, Any]
    preprocessing: dict[str, Any]
    license: str
    text_tower: dict[str, Any] | None = None
    paper: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    path: str | None = None

    @property
    def random_init(self) -> bool:
        """True for cards that are randomly initialised by design (tiny test backbones).

        Cards of real methods whose weights are not published (Harmony, MaskCLIP re-implementation)
        have no ``source`` either, but a format and converter: they need ``--checkpoint``.
        """
        return self.checkpoint.get("format") == "random-init" or (
            self.checkpoint.get("source") is None and self.checkpoint.get("converter") is None
        )

    @property
    def timm_model(self) -> str:
        """The timm model name the card builds on."""
        return str(self.architecture["timm_model"])

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored in result records."""
        return asdict(self)


def card_from_file(path: Path, *, name_is_stem: bool = True) -> BackboneCard:
    """Parse and check one card file.

    Cards in a card directory must be named like their file (so a name finds its file); a card given
    by its path (``--backbone path/to/card.yaml``) may be named otherwise (``name_is_stem=False``).
    """
    data = load_mapping(path)
    for key, where in MOVED_KEYS.items():
        if key in data:
            raise DataFileError(f"{path}: `{key}:` is not a card key: {where}")
    check_keys(path, data, REQUIRED_KEYS, OPTIONAL_KEYS)
    if name_is_stem and data["name"] != path.stem:
        raise DataFileError(f"{path}: card name {data['name']!r} must equal the file name {path.stem!r}")
    if "timm_model" not in data["architecture"]:
        raise DataFileError(f"{path}: architecture.timm_model is required")
    check_keys(path, data["architecture"], {"timm_model"}, ARCHITECTURE_KEYS - {"timm_model"})
    check_keys(path, data["checkpoint"], CHECKPOINT_KEYS, CHECKPOINT_OPTIONAL_KEYS)
    if data.get("text_tower") is not None:
        check_keys(path, data["text_tower"], {"embed_dim", "width", "heads", "layers"}, TEXT_TOWER_KEYS)
    return BackboneCard(**data, path=str(path))


def card_files(directory: Path) -> list[Path]:
    """The card files of a directory: ``*.yaml`` except names starting with ``_`` (``_aliases.yaml``)."""
    if not directory.is_dir():
        return []
    return [p for p in sorted(directory.glob("*.yaml")) if not p.name.startswith("_")]


def load_cards(dirs: list[Path], broken: dict[str, DataFileError] | None = None) -> Registry[BackboneCard]:
    """Read every ``*.yaml`` card in ``dirs``; a name defined twice is an error naming both files.

    Args:
        dirs: Card directories, in priority order.
        broken: When given, a user card file that does not parse is skipped with a warning naming it,
            and its error is kept here under the file's stem (the card's name), so asking for that card
            fails with it while every other card still works.  Without it, or for a shipped card
            (``backbones/``, which must all parse), a bad file is an error.
    """
    registry: Registry[BackboneCard] = Registry("backbone")
    shipped = (REPO_ROOT / "backbones").resolve()
    for directory in dirs:
        tolerant = broken is not None and directory.resolve() != shipped
        for path in card_files(directory):
            try:
                card = card_from_file(path)
            except (DataFileError, TypeError, AttributeError) as exc:
                if not tolerant or broken is None:
                    raise
                error = exc if isinstance(exc, DataFileError) else DataFileError(f"{path}: {exc}")
                log.warning("skipping backbone card %s: %s", path, error)
                broken.setdefault(path.stem, error)
                continue
            if card.name in registry:
                first = registry.get(card.name).path
                raise DataFileError(f"backbone {card.name!r} is defined twice: {first} and {path}")
            registry.register(card.name, card)
    return registry


# Cards in $HARMONY_BENCH_BACKBONES that did not parse: name -> error (raised when that card is asked for).
BROKEN_CARDS: dict[str, DataFileError] = {}


@functools.cache
def backbone_registry() -> Registry[BackboneCard]:
    """The cards from ``$HARMONY_BENCH_BACKBONES`` and ``backbones/`` (read once per process).

    A malformed user card is skipped with a warning (it must not break every command); the shipped
    cards must all parse.
    """
    BROKEN_CARDS.clear()
    return load_cards(backbone_card_dirs(), BROKEN_CARDS)


ALIAS_FILE = "_aliases.yaml"
ALIAS_KEYS = {"card", "means"}
ALIAS_OPTIONAL_KEYS = {"family", "store"}


@dataclass(frozen=True)
class FamilyAlias:
    """A method name typed as ``--backbone`` (``harmony``, ``clip``, ...): its reference card and meaning.

    ``family``: the card family whose cards ``--checkpoint`` may pick from; ``store``: the pretraining
    method whose newest registered export the alias uses when no ``--checkpoint`` is given.
    """

    name: str
    card: str
    means: str
    family: str | None = None
    store: str | None = None
    path: str | None = None


def load_aliases(dirs: list[Path]) -> dict[str, FamilyAlias]:
    """Every ``_aliases.yaml`` of ``dirs``; an alias defined twice, or naming no card, is an error."""
    aliases: dict[str, FamilyAlias] = {}
    for directory in dirs:
        path = directory / ALIAS_FILE
        if not path.is_file():
            continue
        for name, item in load_mapping(path).items():
            if not isinstance(item, dict):
                raise DataFileError(f"{path}: alias {name!r} must be a mapping with {sorted(ALIAS_KEYS)}")
            check_keys(path, item, ALIAS_KEYS, ALIAS_OPTIONAL_KEYS)
            if name in aliases:
                raise DataFileError(f"alias {name!r} is defined twice: {aliases[name].path} and {path}")
            aliases[str(name)] = FamilyAlias(name=str(name), **item, path=str(path))
    return aliases


@functools.cache
def backbone_aliases() -> dict[str, FamilyAlias]:
    """The family aliases from the card directories (read once per process)."""
    aliases = load_aliases(backbone_card_dirs())
    registry = backbone_registry()
    for alias in aliases.values():
        if alias.card not in registry:
            raise DataFileError(f"{alias.path}: alias {alias.name!r} names unknown card {alias.card!r}")
        if alias.name in registry:
            raise DataFileError(f"{alias.path}: alias {alias.name!r} is also a card name")
    return aliases


def get_card(name: str) -> BackboneCard:
    """Look a card up by name; unknown names raise with "did you mean" and the choices.

    Raises:
        DataFileError: the card's file exists in ``$HARMONY_BENCH_BACKBONES`` but does not parse.
    """
    registry = backbone_registry()
    if name not in registry and name in BROKEN_CARDS:
        raise BROKEN_CARDS[name]
    return registry.get(name)


def list_cards() -> list[BackboneCard]:
    """All cards, sorted by name."""
    registry = backbone_registry()
    return [registry.get(name) for name in registry.names()]
