"""Shared pieces of the tests/test_imagenet_*.py files: synthetic roots, tiny user cards, CLI runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from harmony_bench.cards import backbone_registry, get_card
from harmony_bench.cli import main
from harmony_bench.results import load_record

TINY_PREPROCESSING = {"input_size": 32, "resize": 32, "crop": 32}


def write_card(directory: Path, base: str, name: str, **changes: Any) -> str:
    """Write a user card ``name`` = shipped card ``base`` with some blocks updated (shallow per block)."""
    data = {k: v for k, v in get_card(base).to_dict().items() if v is not None and k != "path"}
    data["name"] = name
    for block, values in changes.items():
        data[block] = {**(data.get(block) or {}), **values} if isinstance(values, dict) else values
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return name


def use_cards(monkeypatch, directory: Path) -> None:
    """Make the cards in ``directory`` visible to the registry."""
    monkeypatch.setenv("HARMONY_BENCH_BACKBONES", str(directory))
    backbone_registry.cache_clear()


def copy_tree(source: Path, target: Path) -> Path:
    """A private copy of a (module-scoped) synthetic root that a test may damage."""
    shutil.copytree(source, target)
    return target


def truncate(path: Path, keep: float = 0.3) -> None:
    """Cut a JPEG file short, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def run_cli(task: str, root: Path, output: Path, *extra: str, backbone: str = "vit-tiny-random") -> dict:
    """``harmony-bench run`` with the smoke preset; returns the new record (asserts exit code 0)."""
    before = set(output.glob("*.json")) if output.is_dir() else set()
    argv = ["run", "--backbone", backbone, "--task", task, "--preset", "smoke", "--data-root", str(root)]
    assert main([*argv, "--output", str(output), *extra]) == 0
    (path,) = set(output.glob("*.json")) - before
    return load_record(path)


def value(record: dict, dotted: str) -> Any:
    """A metric value by dotted name (``grid.cls.lr_0p1.top1``)."""
    node = record["metrics"]
    for part in dotted.split("."):
        node = node[part]
    return node["value"]


def dump(record: dict) -> str:
    """Compact metrics for assertion messages."""
    return json.dumps(record["metrics"], default=str)[:2000]
