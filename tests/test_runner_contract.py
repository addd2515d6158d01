"""The task-runner contract: ``runner:`` names a ``TaskRunner``, a link checked when the protocol loads."""

from __future__ import annotations

import textwrap

import pytest

from harmony_bench.paths import REPO_ROOT, TASK_GROUPS
from harmony_bench.protocols import check_runner_link, load_tasks, task_registry
from harmony_bench.registry import import_object
from harmony_bench.runner import RunOptions, TaskRunner, load_task_runner, run
from harmony_bench.yaml_io import DataFileError


def test_every_shipped_runner_is_a_task_runner():
    """Importing each named object (ADE20K and COCO import only their thin modules, not mmseg/mmdet)."""
    registry = load_tasks([REPO_ROOT / "benchmarks" / group for group in TASK_GROUPS])
    runners = {registry.get(name).runner for name in registry.names()}
    assert runners and all(r.endswith(":RUNNER") for r in runners)
    for runner in runners:
        assert isinstance(import_object(runner), TaskRunner), runner


@pytest.mark.parametrize(
    ("runner", "message"),
    [
        (
            "harmony_bench.tasks.imagenet.knn:run",
            "assigns no run = TaskRunner",
        ),  # a function, not the contract
        ("harmony_bench.tasks.imagenet.nothing:RUNNER", "assigns no RUNNER = TaskRunner"),
        ("harmony_bench.tasks.imagenet.knn", "must look like 'package.module:ATTR'"),
    ],
)
def test_a_broken_link_is_refused_when_the_protocol_loads(runner, message):
    with pytest.raises(DataFileError, match=message):
        check_runner_link(runner, "toy.yaml")


def test_an_outside_runner_is_checked_when_it_is_imported(tmp_path, monkeypatch):
    """``$HARMONY_BENCH_TASKS`` runners are not read as source; a plain function is refused at run time."""
    modules, tasks = tmp_path / "bare_modules", tmp_path / "bare_tasks"
    modules.mkdir()
    tasks.mkdir()
    (modules / "bare_runner.py").write_text("def run(context):\n    raise AssertionError('never called')\n")
    (tasks / "bare.yaml").write_text(
        textwrap.dedent("""
        name: bare
        description: a runner that is a bare function
        runner: "bare_runner:run"
        protocol_version: "1"
        dataset: {name: toy}
        config: {score: 1}
        metrics: [{name: score, higher_is_better: true}]
        """)
    )
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv("HARMONY_BENCH_TASKS", str(tasks))
    task_registry.cache_clear()
    from harmony_bench.protocols import get_task

    with pytest.raises(TypeError, match="not a harmony_bench.runner.TaskRunner"):
        load_task_runner(get_task("bare"))
    with pytest.raises(Exception, match="not a harmony_bench.runner.TaskRunner"):
        run("vit-tiny-random", "bare", RunOptions(output=tmp_path / "out"))
    assert len(list((tmp_path / "out").glob("*.json"))) == 1  # the failure is recorded, like any failed run
