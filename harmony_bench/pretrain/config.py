"""Pretraining configuration: ``defaults.yaml`` <- method <- preset <- ``--set key=value`` overrides.

Configs are plain nested dicts read from ``benchmarks/pretrain/``, so a run's
full configuration can be stored in its checkpoint and compared key by key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harmony_bench.paths import REPO_ROOT
from harmony_bench.yaml_io import load_mapping

CONFIG_DIR = REPO_ROOT / "benchmarks" / "pretrain"
OBJECTIVES = ("clip", "ibot", "mae", "mlm", "text_dist", "simclr", "mask_dist")
TEXT_OBJECTIVES = {"clip", "mlm", "text_dist"}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in recursively; unknown keys are an error."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in out:
            raise ValueError(f"unknown pretraining setting {key!r}; known: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict) and key != "overrides":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dotted(key: str, value: Any) -> dict[str, Any]:
    """``("a.b.c", v)`` -> ``{"a": {"b": {"c": v}}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_set(items: list[str]) -> list[dict[str, Any]]:
    """``["optim.lr=1e-3", ...]`` -> merge dicts; values are parsed as YAML (numbers, lists, bools)."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (e.g. optim.lr=1e-3), got {item!r}")
        out.append(dotted(key.strip(), yaml.safe_load(raw)))
    return out


def method_objectives(method: str, methods: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The objective list and setting overrides of a named method or a ``a+b+c`` combination."""
    if method in methods:
        spec = methods[method]
        sets = [dotted(k, v) for k, v in (spec.get("set") or {}).items()]
        return list(spec["objectives"]), sets
    names = [part.strip() for part in method.split("+") if part.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if not names or unknown:
        raise ValueError(
            f"unknown method {method!r}: use one of {sorted(methods)} or a '+'-joined combination of "
            f"objectives {list(OBJECTIVES)} (e.g. clip+ibot+mae)"
        )
    return names, []


def load_config(
    method: str, preset: str | None = None, sets: list[str] | None = None, config_dir: Path = CONFIG_DIR
) -> dict[str, Any]:
    """The full configuration of a run, with ``method`` and ``objective_names`` filled in."""
    cfg = load_mapping(config_dir / "defaults.yaml")
    names, method_sets = method_objectives(method, load_mapping(config_dir / "methods.yaml"))
    layers = list(method_sets)
    if preset:
        path = config_dir / "presets" / f"{preset}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (config_dir / "presets").glob("*.yaml"))
            raise ValueError(f"unknown preset {preset!r}; available: {known}")
        layers.append(load_mapping(path))
    layers += parse_set(sets or [])
    for layer in layers:
        cfg = _merge_allowing_data_extras(cfg, layer)
    cfg["method"] = method
    cfg["objective_names"] = names
    cfg["preset"] = preset
    return cfg


def _merge_allowing_data_extras(cfg: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """Presets may add ``data.synth_*`` keys (how much synthetic data to write); all else must exist."""
    data_extra = {k: v for k, v in (layer.get("data") or {}).items() if k.startswith("synth_")}
    if data_extra:
        cfg = copy.deepcopy(cfg)
        cfg["data"].update(data_extra)
    return deep_merge(cfg, layer)


def uses_text(cfg: dict[str, Any]) -> bool:
    """True when some objective needs the text tower."""
    return bool(TEXT_OBJECTIVES & set(cfg["objective_names"]))
