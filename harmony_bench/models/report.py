"""What a load did, key by key: the answer to "did this checkpoint really load?"."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class IncompleteLoadError(ValueError):
    """A load left backbone parameters unset, or had keys it could not place; the message names them."""


@dataclass
class LoadReport:
    """The outcome of loading one checkpoint into a backbone.

    Attributes:
        backbone: Card name.
        source: Checkpoint path or URL (``None`` for random init).
        sha256: Hex digest of the checkpoint file that was read.
        converter: Converter name from the card.
        loaded: Model keys that received a tensor.
        missing: Model keys that received nothing (only those the card or caller allowed, on success).
        unexpected: Converted keys the model has no place for.
        shape_mismatched: Key -> ``(checkpoint shape, model shape)``.
        dropped: Checkpoint entries left out on purpose -> reason.
        resized: Key -> ``(old shape, new shape)`` for position embeddings resampled to the input size.
        allowed_missing: The ``allow_missing`` patterns in force.
        random_init: True when no checkpoint was loaded (tiny test cards).
        cast: ``{"float16->float32": n}``: float tensors cast to the model's fp32 on load.
    """

    backbone: str
    source: str | None = None
    sha256: str | None = None
    converter: str | None = None
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    resized: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    allowed_missing: list[str] = field(default_factory=list)
    random_init: bool = False
    cast: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is unexpected or mis-shaped (missing keys are checked against the allowances)."""
        return not self.unexpected and not self.shape_mismatched

    @property
    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.random_init:
            return f"{self.backbone}: random init (no checkpoint), {len(self.missing)} tensors initialised"
        reasons = Counter(self.dropped.values())
        dropped = "; ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        parts = [
            f"{self.backbone}: loaded {len(self.loaded)}/{len(self.loaded) + len(self.missing)} tensors "
            f"from {self.source} via {self.converter}",
            f"dropped {len(self.dropped)}" + (f" ({dropped})" if dropped else ""),
        ]
        if self.cast:
            parts.append("cast " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.cast.items())))
        if self.resized:
            parts.append("resized " + ", ".join(f"{k} {o}->{n}" for k, (o, n) in self.resized.items()))
        if self.missing:
            parts.append(f"allowed missing {len(self.missing)}: {', '.join(self.missing[:5])}")
        if self.unexpected or self.shape_mismatched:
            parts.append(f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.shape_mismatched)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON and result records)."""
        return {**asdict(self), "summary": self.summary}
