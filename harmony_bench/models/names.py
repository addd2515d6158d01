"""What a ``--backbone`` name means: a card, an alias, a path, a registered export or a hub model.

``--backbone`` (and suites, ``backbones show``) accept, tried in this order:

1. a card name (``backbones/*.yaml`` and ``$HARMONY_BENCH_BACKBONES``);
2. a family alias (``harmony``, ``clip``, ``ibot`` ...; ``backbones/_aliases.yaml``): the family's
   reference card; with ``--checkpoint`` the family's card that loads the file cleanly; for aliases
   with ``store:`` and no ``--checkpoint``, the newest registered export of that pretraining method;
3. ``timm:NAME[.TAG]``, ``open_clip:ARCH/TAG``, ``open_clip:hf-hub:ORG/NAME``, ``hf-hub:ORG/NAME``: a
   card generated from the model's own pretrained config (``hub_cards``);
4. a card file path, or a pretraining output folder (its newest ``export/*.yaml``, with the weights
   next to it);
5. the name of an export registered in the user's backbone store (``harmony_bench.store``).

Every resolution says in one line what the name became, and cards that are not in the registry
(generated, from a path or from the store) are registered in this process under their name, so every
later lookup by name (the dense tasks' mmengine config, the suites) finds the same card.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from harmony_bench.cards import (
    BROKEN_CARDS,
    BackboneCard,
    FamilyAlias,
    backbone_aliases,
    backbone_registry,
    card_from_file,
)
from harmony_bench.registry import UnknownNameError, suggest

PRETRAIN_TAG = "harmony-bench-pretrain"
HARMONY_REPO = "MohammedSB/Harmony"


class NoWeightsError(LookupError):
    """A name that needs weights nobody has published, and none were given or registered."""


@dataclass(frozen=True)
class ResolvedBackbone:
    """A ``--backbone`` name resolved: the card, the weights the name implies, and how it was read."""

    typed: str
    card: BackboneCard
    checkpoint: str | None = None  # weights implied by the name (an export); None: --checkpoint / the card's
    how: str = "card"
    notes: tuple[str, ...] = field(default_factory=tuple)


def resolve_backbone(
    name: str,
    checkpoint: str | None = None,
    *,
    trust_checkpoint: bool = False,
    register: bool = True,
    fetch: bool = False,
    need_weights: bool = True,
) -> ResolvedBackbone:
    """Resolve ``name`` (see the module docstring); ``checkpoint`` is the user's ``--checkpoint``.

    With ``fetch``, a generated card's weights are fetched now (from the library's cache, or
    downloaded into it) and their sha256 written into the card, so a missing file stops the run
    before it starts and the record names the exact file.  ``need_weights=False`` (``backbones show``)
    resolves an alias of unpublished weights to its reference card instead of raising.

    Raises:
        UnknownNameError: nothing of that name; the message lists cards, aliases, registered exports
            and the other forms.
        NoWeightsError: an alias of unpublished weights with no ``--checkpoint`` and no registered export.
        DataFileError: a user card file of that name exists but does not parse (the error names it).
    """
    registry = backbone_registry()
    if name in registry:
        resolved = ResolvedBackbone(name, registry.get(name))
    elif name in BROKEN_CARDS:  # a user card file of that name that does not parse: say why
        raise BROKEN_CARDS[name]
    elif name in backbone_aliases():
        resolved = _from_alias(backbone_aliases()[name], checkpoint, trust_checkpoint, need_weights)
    elif _is_hub(name):
        from harmony_bench.models.hub_cards import hub_card

        card = hub_card(name)
        notes = [_hub_note(card)]
        if fetch and checkpoint is None:
            card, where = _with_weights(card)
            notes.append(f"weights: {where}")
        resolved = ResolvedBackbone(name, card, how="hub", notes=tuple(notes))
    elif _looks_like_path(name):
        resolved = _from_path(Path(name).expanduser())
    else:
        resolved = _from_store(name)
    if register:
        _register(resolved.card)
    return resolved


def resolved_card_name(name: str, checkpoint: str | None = None) -> str:
    """The card name a run of ``name`` records (suites match records by it)."""
    return _cached_name(name, checkpoint)


@functools.lru_cache(maxsize=256)
def _cached_name(name: str, checkpoint: str | None) -> str:
    return resolve_backbone(name, checkpoint).card.name


def _with_weights(card: BackboneCard) -> tuple[BackboneCard, str]:
    """The card with its weights file's sha256 (and hub revision) filled in, and where the file is."""
    import dataclasses

    from harmony_bench.models.checkpoint_io import sha256_of
    from harmony_bench.models.hub_cards import hub_weights
    from harmony_bench.models.hub_files import snapshot_revision

    path = hub_weights(str(card.checkpoint["source"]))
    files = {"weights": path.name}
    revision = snapshot_revision(path)
    if revision:
        files["revision"] = revision
    checkpoint = {**card.checkpoint, "sha256": sha256_of(path), "files": files}
    return dataclasses.replace(card, checkpoint=checkpoint), str(path)


def _is_hub(name: str) -> bool:
    from harmony_bench.models.hub_cards import is_hub_name

    return is_hub_name(name)


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or name.startswith(".") or Path(name).exists()


def _register(card: BackboneCard) -> None:
    """Make ``card`` findable by name in this process; a different card of the same name is an error."""
    registry = backbone_registry()
    if card.name not in registry:
        registry.register(card.name, card)
        return
    known = registry.get(card.name)
    if known != card:
        raise ValueError(
            f"backbone {card.name!r} from {card.path or 'a generated card'} differs from the card of the "
            f"same name in {known.path}; rename one of them"
        )


# --------------------------------------------------------------------------- aliases


def _from_alias(
    alias: FamilyAlias, checkpoint: str | None, trust: bool, need_weights: bool = True
) -> ResolvedBackbone:
    registry = backbone_registry()
    reference = registry.get(alias.card)
    if checkpoint is not None:
        card, note = _fitting_family_card(alias, reference, checkpoint, trust)
        return ResolvedBackbone(alias.name, card, how="alias", notes=(note,))
    if alias.store:
        from harmony_bench import store

        entry = store.newest(alias.store)
        if entry is not None:
            card = card_from_file(Path(entry.card))
            note = (
                f"--backbone {alias.name}: the newest {alias.store} export in the backbone store, "
                f"{entry.name} (run folder {entry.run_folder}, step {entry.step}, "
                f"registered {entry.registered[:19]}Z); "
                f"weights {entry.weights}"
            )
            return ResolvedBackbone(alias.name, card, entry.weights, how="store", notes=(note,))
        if reference.checkpoint.get("source") is None:
            if need_weights:
                raise NoWeightsError(no_weights_message(alias))
            note = (
                f"--backbone {alias.name}: {alias.card}, no weights yet (`harmony-bench pretrain --method "
                f"{alias.store} ...` registers some; or --checkpoint main_vit_checkpoint.pth)"
            )
            return ResolvedBackbone(alias.name, reference, how="alias", notes=(note,))
    note = f"--backbone {alias.name}: {alias.card} ({alias.means})"
    return ResolvedBackbone(alias.name, reference, how="alias", notes=(note,))


def _fitting_family_card(
    alias: FamilyAlias, reference: BackboneCard, checkpoint: str, trust: bool
) -> tuple[BackboneCard, str]:
    """The reference card if it loads ``checkpoint`` cleanly, else the one family card that does."""
    from harmony_bench.models.inspection import fit_cards

    registry = backbone_registry()
    family = [c for c in (registry.get(n) for n in registry.names()) if c.family == (alias.family or "")]
    candidates = [reference] + [c for c in family if c.name != reference.name and not c.random_init]
    try:
        fits = fit_cards(checkpoint, trust=trust, cards=candidates)
    except (OSError, ValueError):  # unreadable file: the load itself will say why
        fits = []
    clean = [f["card"] for f in fits if f["status"] == "clean"]
    if reference.name in clean or not clean:
        return reference, f"--backbone {alias.name}: {reference.name} ({alias.means})"
    if len(clean) > 1:
        raise ValueError(
            f"--backbone {alias.name}: {checkpoint} loads cleanly into several {alias.name} cards "
            f"({', '.join(clean)}); name the card instead of the alias"
        )
    return registry.get(clean[0]), (
        f"--backbone {alias.name}: {checkpoint} is not a {reference.name} checkpoint; it loads cleanly "
        f"into {clean[0]}, which is used"
    )


def no_weights_message(alias: FamilyAlias) -> str:
    """The two ways to get weights for an alias whose weights were never published."""
    method = alias.store or alias.name
    return (
        f"--backbone {alias.name} needs {method} weights: none are published, no --checkpoint was given, and "
        f"no `harmony-bench pretrain --method {method}` export is registered in the backbone store "
        f"({_store_dir()}). Get weights one of two ways:\n"
        f"  1. pretrain them (registered in the store, then --backbone {alias.name} finds them): "
        f"`harmony-bench pretrain --method {method} --preset smoke --output runs/{method}-smoke` (tiny, CPU, "
        f"~2 min), or the paper's setting `harmony-bench pretrain --method {method} --arch "
        f"vit_small_patch16_224 --data cc3m:/data/cc3m --epochs 25 --output runs/{method}-s16`;\n"
        f"  2. use a checkpoint trained with the Harmony repo ({HARMONY_REPO}, main_harmony.py): "
        f"`--backbone {alias.name} --checkpoint OUTPUT_DIR/main_vit_checkpoint.pth` (image tasks need only "
        "this file)."
    )


def _store_dir() -> Path:
    from harmony_bench import store

    return store.backbones_dir()


# --------------------------------------------------------------------------- paths and the store


def _from_path(path: Path) -> ResolvedBackbone:
    typed = str(path)
    if path.is_file():
        if path.suffix not in (".yaml", ".yml"):
            raise ValueError(
                f"--backbone {typed} is a file but not a card (.yaml); a checkpoint goes to --checkpoint, "
                "with --backbone naming its card (`harmony-bench backbones inspect FILE` lists the cards "
                "that load it)"
            )
        card = card_from_file(path, name_is_stem=False)
        weights = _export_weights(card, path)
        note = f"--backbone {typed}: card {card.name}" + (f", weights {weights}" if weights else "")
        return ResolvedBackbone(typed, card, weights, how="card file", notes=(note,))
    if path.is_dir():
        exports = _export_cards(path)
        if not exports:
            raise FileNotFoundError(
                f"--backbone {typed} is a folder without a harmony-bench export (no export/*.yaml, and no "
                "*.yaml with a .safetensors beside it); a pretraining run writes one at every epoch end"
            )
        card_path = exports[-1]
        card = card_from_file(card_path, name_is_stem=False)
        weights = _export_weights(card, card_path)
        note = f"--backbone {typed}: the newest export of that run, {card.name} ({card_path})"
        return ResolvedBackbone(typed, card, weights, how="run folder", notes=(note,))
    raise FileNotFoundError(f"--backbone {typed}: no such card file or pretraining output folder")


def _export_cards(folder: Path) -> list[Path]:
    """Export cards of a run folder (or of its ``export/`` folder itself), oldest first."""
    found = []
    for directory in (folder / "export", folder):
        found += [p for p in directory.glob("*.yaml") if p.with_suffix(".safetensors").is_file()]
        if found:
            break
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _export_weights(card: BackboneCard, card_path: Path) -> str | None:
    """A pretraining export's weights file beside its card (exports leave ``checkpoint.source`` empty)."""
    if card.checkpoint.get("source") is None and PRETRAIN_TAG in card.tags:
        weights = card_path.with_suffix(".safetensors")
        return str(weights) if weights.is_file() else None
    return None


def _from_store(name: str) -> ResolvedBackbone:
    from harmony_bench import store

    entry = store.get_entry(name)
    if entry is None:
        raise UnknownNameError(unknown_message(name))
    if not entry.available:
        raise FileNotFoundError(
            f"backbone {name!r} is registered in the backbone store ({store.backbones_dir()}) but its files "
            f"are gone ({entry.card}, {entry.weights}); rerun `harmony-bench pretrain ... --output "
            f"{entry.run_folder}` or delete {store.backbones_dir() / (name + '.json')}"
        )
    card = card_from_file(Path(entry.card))
    note = f"--backbone {name}: export of {entry.run_folder} (step {entry.step}), weights {entry.weights}"
    return ResolvedBackbone(name, card, entry.weights, how="store", notes=(note,))


def unknown_message(name: str) -> str:
    """Unknown name: the close matches among cards, aliases and registered exports, and the other forms."""
    from harmony_bench import store

    known = [*backbone_registry().names(), *backbone_aliases(), *(e.name for e in store.entries())]
    base = suggest(name, sorted(set(known)), "backbone")
    return (
        f"{base}. Other forms: a family alias ({', '.join(sorted(backbone_aliases()))}), timm:NAME[.TAG], "
        "open_clip:ARCH/TAG, hf-hub:ORG/NAME, a card file path or a pretraining output folder "
        "(`harmony-bench list backbones` lists them all)"
    )


def _hub_note(card: BackboneCard) -> str:
    pre = card.preprocessing
    text = "with its text tower" if card.text_tower else "vision only"
    return (
        f"--backbone {card.name}: generated card ({card.architecture['timm_model']}, {text}; eval transform "
        f"resize {pre['resize']} {pre['interpolation']}, crop {pre['crop']}, mean {pre['mean']}, "
        f"std {pre['std']}); it goes into the record"
    )


def registered_and_store_cards() -> list[BackboneCard]:
    """Every card a name can reach without a download: the registry's, then the store's exports."""
    from harmony_bench import store

    registry = backbone_registry()
    cards = [registry.get(n) for n in registry.names()]
    names = {c.name for c in cards}
    for entry in store.entries():
        if entry.available and entry.name not in names:
            try:
                cards.append(card_from_file(Path(entry.card)))
            except (OSError, ValueError):
                continue
    return cards
