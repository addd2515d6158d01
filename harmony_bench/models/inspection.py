"""Looking inside a checkpoint file, and asking every card whether its converter would load it cleanly.

``harmony-bench backbones inspect`` prints this.  Nothing here picks a card
for the user: the answer lists every card whose declared converter and
architecture fit the file, so a user can see which card to use (and why the
others do not fit) instead of the loader guessing a family from key names.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from harmony_bench.cards import BackboneCard, list_cards
from harmony_bench.models.checkpoint_io import (
    TORCHSCRIPT_FORMAT,
    is_torchscript,
    read_checkpoint,
    sha256_of,
)
from harmony_bench.models.report import LoadReport


def _describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"tensor {list(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        tensors = [v for v in value.values() if torch.is_tensor(v)]
        numel = sum(t.numel() for t in tensors)
        return f"mapping of {len(value)} entries ({len(tensors)} tensors, {numel:,} values)"
    if isinstance(value, argparse.Namespace):
        return f"argparse.Namespace ({len(vars(value))} arguments)"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return f"{type(value).__name__} {value!r}"[:80]
    return type(value).__name__


def _tensor_items(obj: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor in nested mappings (two levels deep), keyed by its dotted path."""
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if torch.is_tensor(value):
            out[prefix + str(key)] = value
        elif isinstance(value, Mapping) and depth < 2:
            out.update(_tensor_items(value, f"{prefix}{key}.", depth + 1))
    return out


def _prefixes(keys: list[str], parts: int = 2, top: int = 12) -> dict[str, int]:
    """The most common leading key components (e.g. ``module.visual.``), a sketch of the layout."""
    counts = Counter(".".join(k.split(".")[:parts]) + ("." if k.count(".") >= parts else "") for k in keys)
    return dict(counts.most_common(top))


def describe_checkpoint(path: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Container keys, key-prefix layout and parameter counts of a checkpoint file."""
    path = Path(path)
    info: dict[str, Any] = {"path": str(path), "size_bytes": os.path.getsize(path), "sha256": sha256_of(path)}
    if is_torchscript(path):
        info["format"] = TORCHSCRIPT_FORMAT
        obj = read_checkpoint(path, fmt=TORCHSCRIPT_FORMAT)
        info["note"] = "TorchScript archive: load it with a card whose checkpoint format is 'torchscript'"
    else:
        info["format"] = "safetensors" if path.suffix == ".safetensors" else "pytorch"
        obj = read_checkpoint(path, trust=trust)
    info["container"] = {str(k): _describe(v) for k, v in obj.items() if not torch.is_tensor(v)}
    tensors = _tensor_items(obj)
    info["tensors"] = len(tensors)
    info["parameters"] = sum(t.numel() for t in tensors.values())
    info["layout"] = _prefixes(list(tensors))
    return info


def _text_in_file(card: BackboneCard) -> bool:
    """The card's text tower comes from the same file (not from a second one, as Harmony-repo cards)."""
    return card.text_tower is not None and not card.checkpoint.get("text_converter")


def _expected(card: BackboneCard) -> tuple[dict[str, list[int]], dict[str, torch.dtype]]:
    """Key -> shape and key -> dtype of the card's image model (and text tower under ``text.``), on meta."""
    from harmony_bench.models.build import build_image_model, build_text_model
    from harmony_bench.models.loading import expected_dtypes, expected_shapes

    with torch.device("meta"):
        modules = {"": build_image_model(card)}
        if _text_in_file(card):
            modules["text."] = build_text_model(card.text_tower)
    return expected_shapes(modules), expected_dtypes(modules)


def fit_card(card: BackboneCard, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Would ``card`` load the already-read checkpoint ``obj`` cleanly?  Conversion runs; no weights move."""
    from harmony_bench.models.converters import convert
    from harmony_bench.models.loading import diff_keys, dtype_errors, load_errors

    result: dict[str, Any] = {"card": card.name, "converter": card.checkpoint["converter"]}
    try:
        state, dropped = convert(card.checkpoint["converter"], obj, card.checkpoint.get("options"))
    except (ValueError, KeyError, TypeError) as exc:
        return {**result, "status": "no", "detail": f"converter refused: {exc}"}
    expected, dtypes = _expected(card)
    if not _text_in_file(card):
        state = {k: v for k, v in state.items() if not k.startswith("text.")}
    casts = Counter(f"{str(v.dtype)[6:]}->float32" for v in state.values() if v.is_floating_point())
    casts.pop("float32->float32", None)  # the load casts other float dtypes to fp32, never integers
    given = {k: list(v.shape) for k, v in state.items()}
    report = LoadReport(backbone=card.name)
    report.loaded, report.missing, report.unexpected, report.shape_mismatched = diff_keys(expected, given)
    resizable = [
        k
        for k, (c, m) in report.shape_mismatched.items()
        if k.endswith(("pos_embed", "bias_table")) and c[-1] == m[-1]
    ]
    for key in resizable:
        del report.shape_mismatched[key]
    errors = load_errors(report, card.checkpoint.get("allow_missing") or [])
    errors += dtype_errors(dtypes, {k: v.dtype for k, v in state.items()})
    if errors:
        return {**result, "status": "no", "detail": "; ".join(errors)}
    detail = f"{len(report.loaded) + len(resizable)} tensors, {len(dropped)} dropped"
    if casts:
        detail += ", cast " + ", ".join(f"{n} {kind}" for kind, n in sorted(casts.items()))
    if resizable:
        detail += f", resized at load: {', '.join(resizable)}"
    return {**result, "status": "clean", "detail": detail}


def fit_cards(
    path: str | Path, *, trust: bool = False, cards: list[BackboneCard] | None = None
) -> list[dict[str, Any]]:
    """``fit_card`` for every card with a converter (read once per checkpoint format)."""
    path = Path(path)
    cache: dict[str, Any] = {}
    results = []
    for card in cards if cards is not None else list_cards():
        if card.random_init or not card.checkpoint.get("converter"):
            continue
        fmt = TORCHSCRIPT_FORMAT if card.checkpoint.get("format") == TORCHSCRIPT_FORMAT else None
        if fmt not in cache:
            try:
                cache[fmt] = read_checkpoint(path, fmt=fmt, trust=trust)
            except ValueError as exc:
                cache[fmt] = exc
        if isinstance(cache[fmt], Exception):
            results.append(
                {
                    "card": card.name,
                    "converter": card.checkpoint["converter"],
                    "status": "no",
                    "detail": f"cannot read as {card.checkpoint.get('format')}: {cache[fmt]}",
                }
            )
            continue
        results.append(fit_card(card, cache[fmt]))
    return results


def fitting_cards_hint(
    path: str | Path,
    failed: BackboneCard,
    candidates: Callable[[], list[BackboneCard]],
    *,
    trust: bool = False,
) -> str:
    """For a load that failed: which cards *do* load the file cleanly (what ``backbones inspect`` says).

    ``candidates`` lists the cards to try (``names.registered_and_store_cards``; passed in so that this
    module stays below the name resolver, which uses :func:`fit_cards`).  Returns a sentence to append
    to the error: the card(s) to use with what each reads, or, when no card fits, the pointer to
    ``backbones inspect``.  Never raises: the original error is what matters.
    """
    try:
        cards = [c for c in candidates() if c.name != failed.name]
        clean = [r["card"] for r in fit_cards(path, trust=trust, cards=cards) if r["status"] == "clean"]
    except Exception:  # the hint is best effort; the load error stands on its own
        return f"`harmony-bench backbones inspect {path}` shows which cards can read it."
    if not clean:
        return (
            f"No card loads {path} cleanly either; `harmony-bench backbones inspect {path}` shows its layout "
            "and why each card does not fit."
        )
    by_name = {c.name: c for c in cards}
    first = by_name[clean[0]]
    text = f"This file is what {first.name} reads ({first.description}): use --backbone {first.name}"
    if len(clean) > 1:
        text += f" (also loads cleanly: {', '.join(clean[1:6])}{' …' if len(clean) > 6 else ''})"
    return text + "."
