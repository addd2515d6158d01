"""Building blocks shared by the converters: container unwrapping and rename tables as data.

Every converter returns ``(state_dict, dropped)``: ``state_dict`` uses timm's
key names for the image tower and open_clip ``TextTransformer`` names under
``text.`` for the text tower; ``dropped`` maps each checkpoint entry that was
left out on purpose to the reason.  A key that no rule recognises is passed
through unchanged, so the loader reports it as unexpected instead of it
vanishing silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from harmony_bench.models.checkpoint_io import CheckpointError

StateDict = dict[str, torch.Tensor]
Dropped = dict[str, str]
ConvertResult = tuple[StateDict, Dropped]
Rule = tuple[str, str]  # (full-match regex on the key, replacement template)

TEXT_PREFIX = "text."

# OpenAI-layout text tower (CLIP, open_clip, SLIP) -> open_clip TextTransformer under ``text.``.
CLIP_TEXT_RULES: list[Rule] = [
    (r"token_embedding\.weight", "text.token_embedding.weight"),
    (r"positional_embedding", "text.positional_embedding"),
    (r"transformer\.(resblocks\..+)", r"text.transformer.\1"),
    (r"ln_final\.(weight|bias)", r"text.ln_final.\1"),
    (r"text_projection", "text.text_projection"),
]

REASON_TEMPERATURE = "contrastive temperature (logit_scale); embeddings do not use it"
REASON_TRAINING_STATE = "training state (optimizer, schedule, loss buffers, arguments), not weights"


def unwrap(obj: Mapping[str, Any], path: Iterable[str], converter: str) -> tuple[Mapping[str, Any], Dropped]:
    """Descend into nested containers, e.g. ``("state_dict",)`` or ``("model",)``.

    Every key that sits next to the one descended into is reported as dropped training state.  A missing
    container key is an error naming the keys that are there: the checkpoint is not in this converter's
    format.
    """
    dropped: Dropped = {}
    trail = ""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(obj)[:12] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(
                f"converter {converter!r} expects a top-level {trail + key!r} entry; found {found}. "
                "Is this checkpoint in the format the card declares?"
            )
        for other in obj:
            if other != key:
                dropped[trail + str(other)] = REASON_TRAINING_STATE
        obj = obj[key]
        trail += f"{key}."
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"converter {converter!r}: {trail.rstrip('.')!r} is a {type(obj).__name__}, not weights"
        )
    return obj, dropped


def strip_prefix(state: Mapping[str, Any], prefix: str, converter: str) -> StateDict:
    """Remove ``prefix`` from every key; a key without it is an error (wrong format or wrong card)."""
    if not prefix:
        return dict(state)
    outside = [k for k in state if not k.startswith(prefix)]
    if outside:
        raise CheckpointError(
            f"converter {converter!r} expects every key to start with {prefix!r}; "
            f"{len(outside)} do not, e.g. {outside[:3]}"
        )
    return {k[len(prefix) :]: v for k, v in state.items()}


def take_prefix(state: Mapping[str, Any], prefix: str) -> tuple[StateDict, StateDict]:
    """Split into (keys under ``prefix`` with it removed, all other keys unchanged)."""
    inside = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    outside = {k: v for k, v in state.items() if not k.startswith(prefix)}
    return inside, outside


def apply_rules(
    state: Mapping[str, Any],
    renames: Sequence[Rule],
    drops: Sequence[Rule] = (),
    *,
    passthrough: bool = True,
    label: str = "",
) -> tuple[StateDict, Dropped, list[str]]:
    """Rename keys by the first full-matching rule; drop keys matching a drop rule.

    Args:
        state: Input keys and tensors.
        renames: ``(regex, replacement)`` pairs tried in order; ``re.fullmatch`` must match.
        drops: ``(regex, reason)`` pairs; checked before renames.
        passthrough: Keep unmatched keys unchanged (else they are returned as ``unmatched``).
        label: Prefix for keys in ``dropped`` (where the key sat in the original checkpoint).

    Returns:
        ``(renamed, dropped, unmatched)``.
    """
    out: StateDict = {}
    dropped: Dropped = {}
    unmatched: list[str] = []
    for key, value in state.items():
        reason = next((r for pattern, r in drops if re.fullmatch(pattern, key)), None)
        if reason is not None:
            dropped[label + key] = reason
            continue
        for pattern, replacement in renames:
            if re.fullmatch(pattern, key):
                out[re.sub(f"^(?:{pattern})$", replacement, key)] = value
                break
        else:
            if passthrough:
                out[key] = value
            else:
                unmatched.append(key)
    return out, dropped, unmatched


def projection_to_head(projection: torch.Tensor) -> StateDict:
    """A ``(width, embed)`` projection matrix (``x @ P``) as timm's ``head`` Linear with a zero bias."""
    weight = projection.t().contiguous()
    return {"head.weight": weight, "head.bias": torch.zeros(weight.shape[0], dtype=weight.dtype)}
