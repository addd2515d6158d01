"""Placing converted weights into the built networks, key by key, and refusing incomplete loads.

Research repos load with ``strict=False`` and no report, so a wrong prefix
silently evaluates a random network.  Here every model parameter must receive
a tensor of the right shape unless the card or the caller allows it by name
(``allow_missing`` patterns, fnmatch style), and every converted tensor must
find a place: otherwise the load fails with a message naming the keys.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from harmony_bench.models.converters._common import TEXT_PREFIX
from harmony_bench.models.report import IncompleteLoadError, LoadReport


def to_float32(
    state: Mapping[str, torch.Tensor], casts: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Cast floating tensors to fp32 (OpenAI's archives are fp16); leave integer buffers alone.

    Args:
        state: Converted weights.
        casts: Filled with ``{"float16->float32": n}``: how many tensors of each float dtype were cast,
            for the load report (fp16, bf16 and fp64 weights are legitimate, but the cast is said).
    """
    out = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float32:
            if casts is not None:
                name = f"{_dtype_name(value.dtype)}->float32"
                casts[name] = casts.get(name, 0) + 1
            value = value.float()
        out[key] = value
    return out


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def expected_dtypes(modules: Mapping[str, nn.Module]) -> dict[str, torch.dtype]:
    """The dtype of every tensor the modules hold, keyed like :func:`expected_shapes`."""
    return {prefix + k: v.dtype for prefix, m in modules.items() for k, v in m.state_dict().items()}


def dtype_errors(expected: Mapping[str, torch.dtype], given: Mapping[str, torch.dtype]) -> list[str]:
    """Integer or bool tensors where the model holds floats (and floats where it holds integers).

    ``load_state_dict`` would copy them in silently (``copy_`` casts), so an int64 file of the right
    shapes would "load" and evaluate a network of integers.  Float dtypes among themselves are fine.
    """
    bad = [
        f"{key} ({_dtype_name(given[key])} into {_dtype_name(want)})"
        for key, want in expected.items()
        if key in given and want.is_floating_point != given[key].is_floating_point
    ]
    if not bad:
        return []
    return [
        f"{len(bad)} tensors have a dtype that cannot be the model's weights (integer or bool values where "
        f"the model holds floats, or the reverse): {_listing(bad)}. The file is not a float checkpoint of "
        "this model"
    ]


def adapt_to_model(
    state: dict[str, torch.Tensor], model: nn.Module, report: LoadReport, antialias: bool = True
) -> None:
    """Resize what depends on the input size: ViT position embeddings (bicubic) and Swin bias tables.

    ``antialias=False`` resamples the position grid with plain bicubic (``align_corners=False``), the way
    iBOT's and Harmony's dense ``load_checkpoint`` does; timm's default antialiases.
    """
    from timm.layers import resample_abs_pos_embed

    pos_embed = getattr(model, "pos_embed", None)
    if (
        "pos_embed" in state
        and isinstance(pos_embed, torch.Tensor)
        and state["pos_embed"].shape != pos_embed.shape
    ):
        old = state["pos_embed"]
        prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        if old.shape[-1] == pos_embed.shape[-1]:
            state["pos_embed"] = resample_abs_pos_embed(
                old,
                new_size=list(model.patch_embed.grid_size),
                num_prefix_tokens=prefix,
                interpolation="bicubic",
                antialias=antialias,
            )
            report.resized["pos_embed"] = (list(old.shape), list(pos_embed.shape))
    for key, value in list(state.items()):
        if not key.endswith("relative_position_bias_table"):
            continue
        try:
            target = model.get_parameter(key)
        except AttributeError:
            continue
        if value.shape != target.shape:
            from timm.layers import resize_rel_pos_bias_table

            module = model.get_submodule(key.rsplit(".", 1)[0])
            state[key] = resize_rel_pos_bias_table(
                value, new_window_size=module.window_size, new_bias_shape=target.shape
            )
            report.resized[key] = (list(value.shape), list(target.shape))


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def diff_keys(
    expected: Mapping[str, Sequence[int]], given: Mapping[str, Sequence[int]]
) -> tuple[list[str], list[str], list[str], dict[str, tuple[list[int], list[int]]]]:
    """Compare key -> shape maps: ``(loadable, missing, unexpected, shape_mismatched)``, in model order."""
    loadable, missing, mismatched = [], [], {}
    for key, shape in expected.items():
        if key not in given:
            missing.append(key)
        elif list(given[key]) != list(shape):
            mismatched[key] = (list(given[key]), list(shape))
        else:
            loadable.append(key)
    unexpected = sorted(k for k in given if k not in expected)
    return loadable, missing, unexpected, mismatched


def load_errors(report: LoadReport, allow_missing: Iterable[str]) -> list[str]:
    """What makes a load unacceptable: unallowed missing, unexpected or mis-shaped keys (empty if clean)."""
    errors = []
    not_allowed = [k for k in report.missing if not _matches(k, allow_missing)]
    if not_allowed:
        errors.append(
            f"{len(not_allowed)} backbone tensors were not in the checkpoint: {_listing(not_allowed)}. "
            "If that is intended, allow them (card checkpoint.allow_missing or allow_missing=[...])"
        )
    if report.shape_mismatched:
        items = [f"{k} {c} vs model {m}" for k, (c, m) in report.shape_mismatched.items()]
        errors.append(f"{len(items)} shape mismatches (wrong architecture overrides?): {_listing(items)}")
    if report.unexpected:
        errors.append(
            f"{len(report.unexpected)} checkpoint tensors have no place in the model: "
            f"{_listing(report.unexpected)}"
        )
    return errors


def expected_shapes(modules: Mapping[str, nn.Module]) -> dict[str, list[int]]:
    """Every tensor the modules hold (parameters and persistent buffers), keyed with the module's prefix."""
    return {prefix + k: list(v.shape) for prefix, m in modules.items() for k, v in m.state_dict().items()}


def place_weights(
    modules: Mapping[str, nn.Module],
    state: Mapping[str, torch.Tensor],
    report: LoadReport,
    allow_missing: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``modules`` (``""`` = image model, ``"text."`` = text tower); fail on any gap.

    Args:
        modules: Prefix -> module; a converted key goes to the module whose prefix it carries.
        state: Converted (and adapted) weights.
        report: Filled in with loaded / missing / unexpected / shape-mismatched keys.
        allow_missing: fnmatch patterns of model keys that may stay at their initial values.
    """
    report.allowed_missing = list(allow_missing)
    given = {k: list(v.shape) for k, v in state.items()}
    report.loaded, report.missing, report.unexpected, report.shape_mismatched = diff_keys(
        expected_shapes(modules), given
    )
    errors = load_errors(report, report.allowed_missing)
    errors += dtype_errors(expected_dtypes(modules), {k: v.dtype for k, v in state.items()})
    if errors:
        raise IncompleteLoadError(
            f"{report.backbone}: checkpoint {report.source} did not load cleanly via "
            f"{report.converter!r}: " + "; ".join(errors)
        )
    loadable = set(report.loaded)
    for prefix, module in sorted(modules.items(), key=lambda item: -len(item[0])):
        own = {k[len(prefix) :]: state[k] for k in loadable if k.startswith(prefix)}
        loadable -= {prefix + k for k in own}
        result = module.load_state_dict(own, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def split_text(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(image keys, text keys with their ``text.`` prefix kept)."""
    image = {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
    text = {k: v for k, v in state.items() if k.startswith(TEXT_PREFIX)}
    return image, text
