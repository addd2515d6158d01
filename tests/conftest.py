import os
import textwrap
from pathlib import Path

# No test touches the network: huggingface_hub (timm, open_clip) reads these when it is imported, so
# they are set before anything imports it; each test also gets its own empty hub cache (below).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest  # noqa: E402

from harmony_bench.cards import backbone_aliases, backbone_registry  # noqa: E402
from harmony_bench.protocols import task_registry  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _clear_caches() -> None:
    from harmony_bench.models import names

    backbone_registry.cache_clear()
    backbone_aliases.cache_clear()
    task_registry.cache_clear()
    names._cached_name.cache_clear()


@pytest.fixture(autouse=True)
def fresh_registries(monkeypatch, tmp_path):
    """Every test sees the registries re-read from disk and writes results under its tmp dir.

    The user-level state is the test's own too: an empty backbone store and synthetic-data cache
    (``HARMONY_BENCH_HOME``) and an empty, offline Hugging Face hub cache.
    """
    monkeypatch.setenv("HARMONY_BENCH_RESULTS", str(tmp_path / "records"))
    monkeypatch.setenv("HARMONY_BENCH_HOME", str(tmp_path / "harmony-bench-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    _clear_caches()
    yield
    _clear_caches()


TOY_RUNNER = """
from harmony_bench.results import metric
from harmony_bench.runner import TaskOutcome, TaskRunner


def run(context):
    if context.config.get("explode"):
        raise RuntimeError("the toy task was told to fail")
    root = context.options.data_root
    return TaskOutcome(
        metrics={"score": metric(context.config["score"] + context.options.seed), "loss": metric(0.5, False)},
        dataset={"name": "toy", "root": str(root) if root else None, "synthetic": True, "manifest": None},
    )


RUNNER = TaskRunner(run=run)
"""

TOY_TASK = """
name: toy
description: a task defined by the tests to exercise the run machinery
runner: "toy_task_runner:RUNNER"
protocol_version: "1"
dataset: {name: toy, synth_kind: imagenet}
config: {score: 10, explode: false, nested: {a: 1, b: 2}}
default_preset: paper
presets:
  paper: {}
  smoke: {score: 1, nested: {b: 3}}
metrics:
  - {name: score, higher_is_better: true}
  - {name: loss, higher_is_better: false}
"""


@pytest.fixture
def toy_task(monkeypatch, tmp_path):
    """Register a tiny task (its runner is a module written into tmp_path) through $HARMONY_BENCH_TASKS."""
    module_dir = tmp_path / "toy_modules"
    module_dir.mkdir()
    (module_dir / "toy_task_runner.py").write_text(textwrap.dedent(TOY_RUNNER))
    monkeypatch.syspath_prepend(str(module_dir))
    task_dir = tmp_path / "toy_tasks"
    task_dir.mkdir()
    (task_dir / "toy.yaml").write_text(TOY_TASK)
    monkeypatch.setenv("HARMONY_BENCH_TASKS", str(task_dir))
    task_registry.cache_clear()
    return "toy"
