"""Checkpoints already in timm's layout, including harmony-bench's own exports.

``harmony-bench backbones convert`` writes a safetensors file with timm key
names and the text tower under ``text.``; this converter reads it (and any
plain timm ``state_dict``) back.  Optional container unwrapping and prefix
stripping are declared by the card (``checkpoint.options``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from unittest.mock import patch

from harmony_bench.models.converters._common import ConvertResult, strip_prefix, unwrap


def convert_timm(
    state_dict: Mapping[str, Any], *, container: str | None = None, prefix: str = ""
) -> ConvertResult:
    """Identity, after the declared ``container`` unwrap and ``prefix`` strip."""
    dropped: dict[str, str] = {}
    if container:
        state_dict, dropped = unwrap(state_dict, tuple(container.split(".")), "timm")
    return strip_prefix(state_dict, prefix, "timm"), dropped


def convert_timm_pretrained(
    state_dict: Mapping[str, Any],
    *,
    model: str,
    model_args: Mapping[str, Any] | None = None,
    classifier: list[str] | None = None,
) -> ConvertResult:
    """A timm model's pretrained weights, loaded the way timm loads them (cards from ``timm:`` names).

    timm itself puts the file into ``model`` (``pretrained=True`` with the file's state dict as the
    pretrained source): its ``checkpoint_filter_fn`` adapts the layout (e.g. original JAX/DeiT
    releases, position embeddings) and, for ``num_classes=0``, it drops the classifier, as a hand
    loaded model would.  timm then loads non-strictly and only logs what did not fit, so the load is
    watched here: a model tensor the file did not provide, or a file tensor with no place, fails the
    conversion naming the keys (never a partly random network).  Returns the built model's tensors.
    """
    import timm
    import torch
    from torch import nn

    from harmony_bench.models.checkpoint_io import CheckpointError

    raw = dict(state_dict)
    results: list[Any] = []
    original = nn.Module.load_state_dict

    def watched(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        result = original(module, *args, **kwargs)
        results.append(result)
        return result

    with torch.random.fork_rng(devices=[]), patch.object(nn.Module, "load_state_dict", watched):
        torch.manual_seed(0)
        try:
            net = timm.create_model(
                model,
                pretrained=True,
                pretrained_cfg_overlay={"state_dict": raw, "source": ""},
                num_classes=0,
                **dict(model_args or {}),
            )
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"timm could not load this file as {model}'s weights: {first}") from exc
    missing = sorted({k for r in results for k in r.missing_keys})
    unexpected = sorted({k for r in results for k in r.unexpected_keys})
    if not results or missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} model tensors not in the file: {', '.join(missing[:8])}")
        if unexpected:
            problems.append(f"{len(unexpected)} file tensors with no place: {', '.join(unexpected[:8])}")
        detail = "; ".join(problems) or "nothing was loaded"
        raise CheckpointError(f"timm could not load this file as {model}'s weights: {detail}")
    heads = tuple(f"{name}." for name in (classifier or ["head"]))
    dropped = {
        k: "classifier head (the benchmark builds the model without one, num_classes=0, as timm does)"
        for k in raw
        if k.startswith(heads)
    }
    return dict(net.state_dict()), dropped
