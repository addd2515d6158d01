"""Listings of what is registered: backbone cards, family aliases, the backbone store, task protocols.

The rows ``list``, ``backbones list`` and the demo print, defined once (what "weights" means included),
and the plain text table they are printed as.
"""

from __future__ import annotations

from typing import Any

from harmony_bench.cards import BackboneCard, backbone_aliases, list_cards
from harmony_bench.protocols import task_registry


def availability(card: BackboneCard) -> str:
    """Where a card's weights come from: ``random init``, ``released`` (a URL) or ``bring your own``."""
    if card.random_init:
        return "random init"
    return "released" if card.checkpoint.get("source") else "bring your own"


def backbone_rows() -> list[dict[str, Any]]:
    """One row per card: ``weights`` is what the checkpoint holds, ``availability`` where it comes from."""
    return [
        {
            "name": card.name,
            "family": card.family,
            "timm_model": card.timm_model,
            "converter": card.checkpoint.get("converter") or "-",
            "weights": "random init" if card.random_init else card.checkpoint.get("weights"),
            "availability": availability(card),
            "text_tower": card.text_tower is not None,
            "description": card.description,
        }
        for card in list_cards()
    ]


def task_rows() -> list[dict[str, Any]]:
    """One row per registered task."""
    registry = task_registry()
    rows = [
        {
            "name": name,
            "status": "available",
            "protocol_version": registry.get(name).protocol_version,
            "description": registry.get(name).description,
        }
        for name in registry.names()
    ]
    return rows


def format_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Left-aligned columns, header first."""
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def alias_rows() -> list[dict[str, Any]]:
    """One row per family alias: the card it names and what it means."""
    return [
        {"alias": a.name, "card": a.card, "means": " ".join(a.means.split())}
        for a in sorted(backbone_aliases().values(), key=lambda a: a.name)
    ]


def store_rows() -> list[dict[str, Any]]:
    """One row per export registered in the user's backbone store, newest last."""
    from harmony_bench import store

    return [
        {
            "name": e.name,
            "method": e.method,
            "step": e.step,
            "registered": e.registered[:19] + "Z",
            "source_folder": e.run_folder if e.available else f"{e.run_folder} (missing)",
        }
        for e in store.entries()
    ]
