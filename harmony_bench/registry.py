"""A small typed registry with lazy entries and helpful errors.

Why not a bare dict: backbones and tasks are looked up by names that users
type on the command line, so an unknown name must say what *was* meant ("did
you mean ...") and list the choices; a name registered twice is a bug that must
fail loudly instead of silently shadowing an entry (lm-evaluation-harness's
``Registry`` does the same).  Entries may be ``"module:attr"`` strings that are
imported on first use, which keeps heavy stacks (mmseg, mmdet) out of
``import harmony_bench``.

Example (the task protocols are kept this way, :func:`harmony_bench.protocols.load_tasks`)::

    specs: Registry[TaskSpec] = Registry("task")
    specs.register("imagenet-knn", spec)
    specs.get("imagenet-kn")  # UnknownNameError: ... did you mean 'imagenet-knn'?
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the choices."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def import_object(spec: str) -> object:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"lazy entry {spec!r} must look like 'package.module:attr'")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def suggest(name: str, choices: list[str], kind: str) -> str:
    """Build the "unknown X; did you mean ..." message for ``name``."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(choices) if choices else "(none registered)"
    return f"Unknown {kind} {name!r}.{hint} Available: {listing}"


class Registry(Generic[T]):
    """Name → object mapping; values may be lazy ``"module:attr"`` strings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str, *, replace: bool = False) -> None:
        """Add ``name``; registering an existing name raises unless ``replace``."""
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (used by tests and by plug-ins that replace entries)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing it first if it is lazy."""
        if name not in self._entries:
            raise UnknownNameError(suggest(name, self.names(), self.kind))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = import_object(entry)  # type: ignore[assignment]
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
