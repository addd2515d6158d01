"""The protocol file is the schema: which keys a run may set, and which values they may take.

A task's ``config:`` block lists every key its runner reads, with its default.  That block is the
schema of the task's settings, so nothing else has to be written for a protocol to be checked:

- **Keys.** A preset, a ``--set`` override or a suite's ``set:`` may only name keys that exist in
  ``config`` (a typo such as ``knn.temprature`` would otherwise sit unused in the record while the
  real value stays unchanged).  The error names the closest real key.  A key may be added on purpose
  by prefixing it with ``+`` (``--set +knn.extra=1``).  A mapping whose default is empty (``{}``) or a
  key whose default is ``null`` is free-form: anything may go below it (``cfg_options`` is checked
  against the mmengine config instead, see ``harmony_bench.dense.engine``).
- **Types.** A value must have the type of its default: a float default refuses ``"hot"``, an int
  default refuses ``1.5``, a list default refuses a scalar and checks its items like the default's.
  Numbers that YAML 1.1 reads as strings (``1e-4``) are read as numbers.  ``null`` is refused unless
  the default is ``null`` or the key is declared ``nullable``.
- **Ranges and choices.** A protocol may declare more in an optional ``constraints:`` section keyed by
  dotted path::

      constraints:
        knn.temperature: {gt: 0}
        knn.ks: {items: {type: int, min: 1}, min_items: 1}
        amp: {choices: [none, bf16, fp16]}
        transform.resize: {type: int, min: 1, nullable: true}

  Keys of a constraint: ``type`` (one or a list of ``bool int float number str list map any``; it
  replaces the type taken from the default), ``nullable``, ``min``, ``max``, ``gt``, ``lt``,
  ``choices``, ``items`` (a constraint for each list item), ``min_items``, ``max_items``.

Every check runs when the config is resolved, before any data is read or model built, and every
error names the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ADD_PREFIX = "+"
TYPE_NAMES = ("bool", "int", "float", "number", "str", "list", "map", "any")
CONSTRAINT_KEYS = {
    "type",
    "nullable",
    "min",
    "max",
    "gt",
    "lt",
    "choices",
    "items",
    "min_items",
    "max_items",
}


class ProtocolKeyError(ValueError):
    """An override or preset names a key the protocol does not have."""


class ProtocolValueError(ValueError):
    """A protocol value has the wrong type or is outside its allowed range or choices."""


# --------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Constraint:
    """What one key allows, beyond the type of its default (see the module docstring)."""

    types: tuple[str, ...] | None = None
    nullable: bool | None = None
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    items: Constraint | None = None
    min_items: int | None = None
    max_items: int | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Constraint:
        """Build from the YAML mapping; ``where`` names it in errors (file and key)."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: a constraint must be a mapping, got {raw!r}")
        unknown = sorted(set(raw) - CONSTRAINT_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown constraint keys {unknown} (allowed: {sorted(CONSTRAINT_KEYS)})"
            )
        types = raw.get("type")
        if types is not None:
            types = (types,) if isinstance(types, str) else tuple(types)
            bad = [t for t in types if t not in TYPE_NAMES]
            if bad:
                raise ValueError(f"{where}: unknown type {bad} (allowed: {list(TYPE_NAMES)})")
        for bound in ("min", "max", "gt", "lt"):
            if raw.get(bound) is not None and not _is_number(raw[bound]):
                raise ValueError(f"{where}: {bound} must be a number, got {raw[bound]!r}")
        choices = raw.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise ValueError(f"{where}: choices must be a list, got {choices!r}")
        items = raw.get("items")
        return cls(
            types=types,
            nullable=raw.get("nullable"),
            min=raw.get("min"),
            max=raw.get("max"),
            gt=raw.get("gt"),
            lt=raw.get("lt"),
            choices=tuple(choices) if choices is not None else None,
            items=cls.parse(items, f"{where}.items") if items is not None else None,
            min_items=raw.get("min_items"),
            max_items=raw.get("max_items"),
        )

    def describe(self) -> str:
        """What is allowed, in words (for error messages)."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        bounds = [(self.gt, ">"), (self.min, ">="), (self.lt, "<"), (self.max, "<=")]
        parts += [f"{op} {value}" for value, op in bounds if value is not None]
        return " and ".join(parts)


def parse_constraints(config: Mapping[str, Any], raw: Any, where: str) -> dict[str, Constraint]:
    """The ``constraints:`` section, checked: every path must exist in ``config``.

    Raises:
        ValueError: a malformed constraint or a path that is not a key of ``config``.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: constraints must map dotted config paths to constraints")
    out = {}
    for path, spec in raw.items():
        if not _has_path(config, str(path)):
            raise ValueError(
                f"{where}: constraint for {path!r}, which is not a key of config{_closest(str(path), config)}"
            )
        out[str(path)] = Constraint.parse(spec, f"{where}: constraints.{path}")
    return out


# --------------------------------------------------------------------------- keys


def merge_overrides(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    what: str,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``config`` updated by ``overrides`` (deep merge) where every overridden key must exist.

    Dotted keys (``knn.temperature``) are expanded; a key prefixed with ``+`` may be new.  Below a
    free-form key (default ``{}`` or ``null``, or a key added with ``+``) anything goes and mappings
    merge as they are (``cfg_options`` keys are mmengine's dotted paths, not ours).

    Args:
        config: The protocol's config (defaults, possibly with a preset merged in).
        overrides: Nested mapping of new values.
        what: Where the overrides come from, for the error (``--set``, ``preset 'smoke'``).
        defaults: The protocol's ``config`` block, which says what is free-form (default: ``config``).

    Raises:
        ProtocolKeyError: an overridden key is not in ``config``; the message names the closest one.
    """
    defaults = config if defaults is None else defaults
    return _merge(dict(config), overrides, defaults, (), defaults, what)


_MISSING = object()


def _merge(
    base: dict[str, Any],
    update: Mapping[str, Any],
    defaults: Any,
    prefix: tuple[str, ...],
    root: Mapping[str, Any],
    what: str,
) -> dict[str, Any]:
    merged = dict(base)
    for raw_key, value in _expand(update):
        key, added = _strip(raw_key)
        path = (*prefix, key)
        if key not in merged and not added:
            dotted = ".".join(path)
            raise ProtocolKeyError(
                f"unknown key {dotted!r} in {what}{_closest(dotted, root)}; the protocol's config lists "
                f"every key (to add a new one on purpose, write +{dotted})"
            )
        default = defaults.get(key, _MISSING) if isinstance(defaults, Mapping) else _MISSING
        current = merged.get(key)
        if added:
            value = _unmark(value)
        if isinstance(value, Mapping) and isinstance(current, dict):
            if added or _free_form(default):
                merged[key] = deep_merge_plain(current, value)
            else:
                merged[key] = _merge(current, value, default, path, root, what)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _free_form(default: Any) -> bool:
    """Whether anything may go below a key with this default (``{}``, ``null``, or no default)."""
    return default is _MISSING or default is None or (isinstance(default, Mapping) and not default)


def deep_merge_plain(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, nested mappings merged, no key checks (free-form settings)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge_plain(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _expand(update: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Items of ``update`` with a dotted key ``a.b`` given as ``a: {b: ...}``."""
    for key, value in update.items():
        key = str(key)
        head, dot, rest = key.partition(".")
        if dot and head.lstrip(ADD_PREFIX) and rest:
            if head.startswith(ADD_PREFIX):  # a new subtree: all of it is ours, nest every part
                nested: Any = value
                for part in reversed(rest.split(".")):
                    nested = {part: nested}
                yield head, nested
            else:  # one level: the next one decides (below a free-form key, `a.b` stays one key)
                yield head, {rest: value}
        else:
            yield key, value


def _strip(key: str) -> tuple[str, bool]:
    return (key[len(ADD_PREFIX) :], True) if key.startswith(ADD_PREFIX) else (key, False)


def _unmark(value: Any) -> Any:
    """A new subtree as written, with the ``+`` markers of ``+a.b.c`` removed from its keys."""
    if isinstance(value, Mapping):
        return {(_strip(k)[0] if isinstance(k, str) else k): _unmark(v) for k, v in value.items()}
    return value


def preset_key_errors(config: Mapping[str, Any], preset: Mapping[str, Any], name: str) -> list[str]:
    """Keys preset ``name`` sets that are not in ``config`` (empty when every key exists)."""
    try:
        merge_overrides(config, preset, f"preset {name!r}")
    except ProtocolKeyError as exc:
        return [str(exc)]
    return []


def _paths(config: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in config.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, Mapping):
            yield from _paths(value, f"{path}.")


def _has_path(config: Mapping[str, Any], dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _closest(dotted: str, config: Mapping[str, Any]) -> str:
    """``" (did you mean 'knn.temperature'?)"`` (or nothing when no key is close)."""
    paths = list(_paths(config))
    close = difflib.get_close_matches(dotted, paths, n=1, cutoff=0.6)
    if not close:  # compare the last part with its siblings' (a typo deep in a long path)
        parent, _, leaf = dotted.rpartition(".")
        siblings = [p for p in paths if p.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(dotted, siblings, n=1, cutoff=0.5) if leaf else []
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- values


def check_config(
    defaults: Mapping[str, Any], config: Mapping[str, Any], constraints: Mapping[str, Constraint], task: str
) -> dict[str, Any]:
    """Check every value of a resolved ``config`` against its default's type and its constraint.

    Args:
        defaults: The protocol's ``config`` block (the types come from here).
        config: The resolved config (preset and overrides merged in).
        constraints: Parsed ``constraints:`` of the protocol.
        task: The task name, for messages.

    Returns:
        ``config`` with numbers that YAML read as strings (``1e-4``) turned into numbers.

    Raises:
        ProtocolValueError: naming the key, the value and what is allowed.
    """
    return _check_node(defaults, config, (), constraints, task)


def _check_node(
    defaults: Mapping[str, Any],
    config: Mapping[str, Any],
    prefix: tuple[str, ...],
    constraints: Mapping[str, Constraint],
    task: str,
) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        path = (*prefix, str(key))
        dotted = ".".join(path)
        if key not in defaults:  # added with '+': free-form
            out[key] = value
            continue
        default = defaults[key]
        rule = constraints.get(dotted)
        if isinstance(default, Mapping) and default and (rule is None or rule.types is None):
            if not isinstance(value, Mapping):
                raise ProtocolValueError(
                    f"{task}: {dotted} = {value!r} is not allowed: it is a group of settings "
                    f"({', '.join(map(str, default))}); set them one by one, "
                    f"e.g. {dotted}.{next(iter(default))}=..."
                )
            out[key] = _check_node(default, value, path, constraints, task)
            continue
        out[key] = check_value(dotted, value, default, rule, task)
    return out


def check_value(dotted: str, value: Any, default: Any, rule: Constraint | None, task: str) -> Any:
    """One key's value checked against its default's type and its constraint; returns it (numbers coerced)."""
    types = rule.types if rule is not None and rule.types is not None else _types_of(default)
    if value is None:
        nullable = rule.nullable if rule is not None and rule.nullable is not None else default is None
        if nullable or (rule is not None and rule.choices is not None and None in rule.choices):
            return None
        raise ProtocolValueError(
            f"{task}: {dotted} = null is not allowed: expected {_type_words(types)} (default {default!r})"
        )
    value = _coerce(value, types)
    if types and "any" not in types and not any(_is_type(value, t) for t in types):
        raise ProtocolValueError(
            f"{task}: {dotted} = {value!r} is not allowed: expected {_type_words(types)} "
            f"(default {default!r})"
        )
    if isinstance(value, list):
        item_rule = rule.items if rule is not None else None
        item_default = _item_default(default)
        if item_rule is not None or item_default is not _NO_ITEM:
            base = None if item_default is _NO_ITEM else item_default
            value = [
                check_value(f"{dotted}[{i}]", item, base, item_rule, task) for i, item in enumerate(value)
            ]
    if rule is not None:
        _check_rule(dotted, value, rule, task)
    return value


def _check_rule(dotted: str, value: Any, rule: Constraint, task: str) -> None:
    def refuse(reason: str) -> None:
        raise ProtocolValueError(f"{task}: {dotted} = {value!r} is not allowed: {reason}")

    if rule.choices is not None and value not in rule.choices:
        refuse("must be " + rule.describe())
    if _is_number(value) and (
        (rule.gt is not None and not value > rule.gt)
        or (rule.min is not None and not value >= rule.min)
        or (rule.lt is not None and not value < rule.lt)
        or (rule.max is not None and not value <= rule.max)
        or (isinstance(value, float) and math.isnan(value))
    ):
        refuse("must be " + rule.describe())
    if isinstance(value, list):
        if rule.min_items is not None and len(value) < rule.min_items:
            refuse(f"needs at least {rule.min_items} item(s)")
        if rule.max_items is not None and len(value) > rule.max_items:
            refuse(f"allows at most {rule.max_items} item(s)")


_NO_ITEM = object()


def _item_default(default: Any) -> Any:
    """The default of a list's items when they all have one type (ints among floats count as floats)."""
    if not isinstance(default, list) or not default:
        return _NO_ITEM
    kinds = {_types_of(item) for item in default}
    if kinds <= {("int",), ("float",)} and ("float",) in kinds:
        return next(item for item in default if isinstance(item, float))
    return default[0] if len(kinds) == 1 else _NO_ITEM


def _types_of(default: Any) -> tuple[str, ...]:
    if default is None or (isinstance(default, Mapping) and not default):
        return ("any",)
    if isinstance(default, bool):
        return ("bool",)
    if isinstance(default, int):
        return ("int",)
    if isinstance(default, float):
        return ("float",)
    if isinstance(default, str):
        return ("str",)
    if isinstance(default, list):
        return ("list",)
    if isinstance(default, Mapping):
        return ("map",)
    return ("any",)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name in ("float", "number"):
        return _is_number(value)
    if name == "str":
        return isinstance(value, str)
    if name == "list":
        return isinstance(value, list)
    if name == "map":
        return isinstance(value, Mapping)
    return True


def _coerce(value: Any, types: tuple[str, ...]) -> Any:
    """``"1e-4"`` → ``1e-4`` for number keys (YAML 1.1 reads exponents without a dot as strings)."""
    if not isinstance(value, str) or "str" in types or "any" in types:
        if isinstance(value, float) and "int" in types and "float" not in types and value.is_integer():
            return int(value)
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if "int" in types and "float" not in types and "number" not in types:
        return int(number) if number.is_integer() else value
    return number if ("float" in types or "number" in types) else value


def _type_words(types: tuple[str, ...]) -> str:
    words = {
        "bool": "true or false",
        "int": "an integer",
        "float": "a number",
        "number": "a number",
        "str": "a string",
        "list": "a list",
        "map": "a mapping",
        "any": "anything",
    }
    return " or ".join(words[t] for t in types)
