"""The user-level home of harmony-bench: pretrained exports registered by ``pretrain``, and caches.

``harmony-bench pretrain`` writes its export (EMA teacher weights + a generated card) into the run
folder; the run folder can be anywhere, so the export is also *registered* here, and
``--backbone harmony`` or ``--backbone pretrained-harmony-<folder>`` find it without any environment
variable.  An entry is a pointer (``backbones/<card name>.json``: the card file, the weights file, the
run folder, the method, the step and when it was registered), not a copy: the export in the run folder
stays the one source of the weights, and a moved or deleted run folder shows up as such in
``list backbones``.

Where: ``$HARMONY_BENCH_HOME``, else ``$XDG_DATA_HOME/harmony-bench``, else
``~/.local/share/harmony-bench``.  Besides ``backbones/``, ``synth/`` caches the synthetic datasets
that ``run --preset smoke`` writes when no ``--data-root`` is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HOME_VARIABLE = "HARMONY_BENCH_HOME"


def home() -> Path:
    """``$HARMONY_BENCH_HOME``, else ``$XDG_DATA_HOME/harmony-bench``, else ``~/.local/share/harmony-bench``.

    The one place harmony-bench keeps per-user state (registered exports, cached synthetic data).
    """
    value = os.environ.get(HOME_VARIABLE)
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "harmony-bench"


def backbones_dir() -> Path:
    """Where registered exports are listed (one JSON pointer per card name)."""
    return home() / "backbones"


def synth_dir() -> Path:
    """Where ``run --preset smoke`` without ``--data-root`` keeps its synthetic datasets."""
    return home() / "synth"


@dataclass(frozen=True)
class StoreEntry:
    """One registered export: the generated card, its weights and the run folder they came from."""

    name: str
    method: str
    card: str
    weights: str
    run_folder: str
    step: int
    registered: str  # UTC ISO time; the newest entry of a method is the default for its alias

    @property
    def available(self) -> bool:
        """Both the card and the weights file are still where the run left them."""
        return Path(self.card).is_file() and Path(self.weights).is_file()


def _entry_path(name: str) -> Path:
    return backbones_dir() / f"{name}.json"


def register_export(card: Path, weights: Path, run_folder: Path, method: str, step: int) -> StoreEntry:
    """Record (or refresh) the export ``card`` + ``weights`` of ``run_folder`` under the card's name.

    A second run folder whose export has the same card name (the name comes from the folder's name)
    takes the name over; the previous entry is returned by :func:`previous_owner` before that, so
    the caller can say what it replaced.
    """
    from harmony_bench.atomic import atomic_write_json

    entry = StoreEntry(
        name=card.stem,
        method=method,
        card=str(card.resolve()),
        weights=str(weights.resolve()),
        run_folder=str(run_folder.resolve()),
        step=int(step),
        registered=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    )
    atomic_write_json(_entry_path(entry.name), asdict(entry))
    return entry


def previous_owner(name: str, run_folder: Path) -> StoreEntry | None:
    """The entry named ``name`` when it belongs to another run folder (it is about to be replaced)."""
    entry = get_entry(name)
    if entry is not None and Path(entry.run_folder) != run_folder.resolve():
        return entry
    return None


def _read(path: Path) -> StoreEntry | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return StoreEntry(**data)
    except (OSError, ValueError, TypeError):
        return None  # a torn or foreign file is not an entry; `list backbones` skips it


def get_entry(name: str) -> StoreEntry | None:
    """The entry registered under ``name``, if any."""
    path = _entry_path(name)
    return _read(path) if path.is_file() else None


def entries() -> list[StoreEntry]:
    """Every readable entry, oldest registration first."""
    directory = backbones_dir()
    found = [_read(p) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    return sorted((e for e in found if e is not None), key=lambda e: (e.registered, e.name))


def newest(method: str) -> StoreEntry | None:
    """The most recently registered export of ``method`` whose files are still there."""
    usable = [e for e in entries() if e.method == method and e.available]
    return usable[-1] if usable else None
