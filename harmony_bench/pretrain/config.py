"""Pretraining configuration: ``defaults.yaml`` <- method <- preset <- ``--set key=value`` overrides.

Configs are plain nested dicts read from ``benchmarks/pretrain/``, so a run's
full configuration can be stored in its checkpoint and compared key by key.

Three top-level keys of those files document instead of configuring (the protocol-file contract):
``sources`` (dotted config path -> upstream citation; in ``methods.yaml`` the path starts with the method
name), ``deviations`` (what we do differently on purpose; in ``methods.yaml`` a mapping method -> list) and
``fixes`` (``"path=value"`` -> the sentence a run records when it opts into that fix of an upstream bug).
They never reach the config; :func:`protocol_docs` resolves them for a method, and the run's own list is
``cfg["deviations"]`` (checkpoint config, export card and metadata carry it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harmony_bench.paths import REPO_ROOT
from harmony_bench.protocol_schema import check_config
from harmony_bench.yaml_io import load_mapping

CONFIG_DIR = REPO_ROOT / "benchmarks" / "pretrain"
OBJECTIVES = ("clip", "ibot", "mae", "mlm", "text_dist", "simclr", "mask_dist")
TEXT_OBJECTIVES = {"clip", "mlm", "text_dist"}
DOC_KEYS = ("sources", "deviations", "fixes")  # top-level documentation keys, not settings


def split_docs(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, documentation)``: a config file's mapping without and with only :data:`DOC_KEYS`."""
    return (
        {k: v for k, v in data.items() if k not in DOC_KEYS},
        {k: v for k, v in data.items() if k in DOC_KEYS},
    )


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
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
            raise ValueError(f"--set {item}: the value {raw!r} is not valid YAML ({reason})") from None
        out.append(dotted(key.strip(), value))
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


def _files(
    method: str, preset: str | None, config_dir: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    """The three files' mappings (defaults, methods, preset or None), each split off its documentation."""
    defaults, d_docs = split_docs(load_mapping(config_dir / "defaults.yaml"))
    methods, m_docs = split_docs(load_mapping(config_dir / "methods.yaml"))
    preset_map, p_docs = None, {}
    if preset:
        path = config_dir / "presets" / f"{preset}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (config_dir / "presets").glob("*.yaml"))
            raise ValueError(f"unknown preset {preset!r}; available: {known}")
        preset_map, p_docs = split_docs(load_mapping(path))
    for name, docs in (("methods.yaml", m_docs), (f"presets/{preset}.yaml", p_docs)):
        if "fixes" in docs:  # only defaults.yaml's are read: one elsewhere would never be recorded
            raise ValueError(
                f"{config_dir / name}: 'fixes:' belongs in defaults.yaml (the opt-in fixes of upstream bugs "
                "are declared once, there, so every run records the ones it chose)"
            )
    return defaults, methods, preset_map, [d_docs, m_docs, p_docs]


def load_config(
    method: str, preset: str | None = None, sets: list[str] | None = None, config_dir: Path = CONFIG_DIR
) -> dict[str, Any]:
    """The full configuration of a run, plus ``method``, ``objective_names``, ``preset``, ``deviations``."""
    cfg, methods, preset_map, docs = _files(method, preset, config_dir)
    defaults = copy.deepcopy(cfg)
    names, method_sets = method_objectives(method, methods)
    layers = list(method_sets)
    if preset_map is not None:
        layers.append(preset_map)
    layers += parse_set(sets or [])
    for layer in layers:
        cfg = _merge_allowing_data_extras(cfg, layer)
    # every value must have its default's type (a number refuses "hot"; "1e-4" is read as a number)
    cfg = check_config(defaults, cfg, {}, "pretrain")
    cfg["method"] = method
    cfg["objective_names"] = names
    cfg["preset"] = preset
    cfg["deviations"] = _deviations(method, docs) + chosen_fixes(cfg, docs[0].get("fixes") or {})
    return cfg


def _deviations(method: str, docs: list[dict[str, Any]]) -> list[str]:
    d_docs, m_docs, p_docs = docs
    per_method = m_docs.get("deviations") or {}
    return [
        str(d)
        for d in list(d_docs.get("deviations") or [])
        + list(per_method.get(method) or [])
        + list(p_docs.get("deviations") or [])
    ]


def chosen_fixes(cfg: dict[str, Any], fixes: dict[str, str]) -> list[str]:
    """The sentences of the opt-in fixes (``"path=value"`` keys of ``fixes:``) this config chose."""
    out = []
    for key, sentence in fixes.items():
        path, _, raw = key.partition("=")
        if lookup(cfg, path) == yaml.safe_load(raw):
            out.append(f"{sentence} [--set {key}]")
    return out


def lookup(cfg: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (``KeyError`` naming the path when a part is missing)."""
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"no pretraining setting {path!r}")
        node = node[part]
    return node


def protocol_docs(method: str, preset: str | None = None, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """What the protocol sheet shows for a method: resolved config, sources, deviations, opt-in fixes.

    ``sources`` maps dotted config paths to citations: ``defaults.yaml``'s, overridden by the method's
    (``methods.yaml`` keys ``"<method>.<path>"``; ``objective_names`` for ``"<method>.objectives"``) and the
    preset's.  A prefix covers every key below it unless a longer path has its own entry.
    """
    cfg = load_config(method, preset, config_dir=config_dir)
    d_docs, m_docs, p_docs = _files(method, preset, config_dir)[3]
    sources = {str(k): str(v) for k, v in (d_docs.get("sources") or {}).items()}
    for key, value in (m_docs.get("sources") or {}).items():
        owner, _, path = str(key).partition(".")
        if owner == method:
            sources["objective_names" if path == "objectives" else path] = str(value)
    sources.update({str(k): str(v) for k, v in (p_docs.get("sources") or {}).items()})
    return {
        "config": cfg,
        "sources": sources,
        "deviations": list(cfg["deviations"]),
        "fixes": {str(k): str(v) for k, v in (d_docs.get("fixes") or {}).items()},
    }


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
