"""Around a run: CPU threads from the cores the process may use; the OpenMMLab stack's known noise hushed."""

import logging
import warnings

import pytest

from harmony_bench import threads
from harmony_bench.dense import quiet

# --------------------------------------------------------------------------- threads


def test_threads_are_the_available_cores_minus_the_loader_workers(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.available_cores() == 6
    assert (
        threads.intra_op_threads(0) == 6
        and threads.intra_op_threads(2) == 4
        and threads.intra_op_threads(9) == 1
    )
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2)  # a container's CPU quota caps the affinity
    assert threads.available_cores() == 2 and threads.intra_op_threads(0) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice: left to torch
    assert threads.intra_op_threads(0) is None
    monkeypatch.setenv(threads.ENV, "1")  # harmony-bench's knob wins
    assert threads.intra_op_threads(4) == 1
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(ValueError, match="HARMONY_BENCH_THREADS='many': expected a positive number"):
        threads.intra_op_threads(0)


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1) == 4


def test_the_largest_num_workers_of_a_config_counts():
    config = {
        "extract": {"num_workers": 8},
        "eval": {"num_workers": 2},
        "cfg_options": {"val_dataloader.num_workers": 12},
    }
    assert threads.max_workers(config) == 12 and threads.max_workers({"a": 1}) == 0


def test_configure_threads_sets_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv(threads.ENV, "1")
    try:
        assert threads.configure_threads(4) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- OpenMMLab noise


def _warn_from(module: str, message: str, category=UserWarning) -> None:
    warnings.warn_explicit(message, category, filename=f"/site-packages/{module.replace('.', '/')}.py",
                           lineno=1, module=module, registry={})  # fmt: skip


def test_known_openmmlab_warnings_are_silenced_only_where_they_come_from():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.silence_known_warnings()
        _warn_from("mmengine.utils.package_utils", "pkg_resources is deprecated as an API. See https://...")
        _warn_from("importlib", "pkg_resources is deprecated as an API. See https://...")  # the reload
        _warn_from("mmseg.models.builder", "``build_loss`` would be deprecated soon, please use ...")
        _warn_from("mmseg.models.losses.cross_entropy_loss", "Default ``avg_non_ignore`` is False, if ...")
        _warn_from("mmseg.engine.hooks.visualization_hook", "The draw is False, it means that the hook ...")
        _warn_from("mmseg.datasets.transforms.loading", "`reduce_zero_label` will be deprecated, if ...")
        assert caught == []
        _warn_from("mmseg.datasets.transforms.loading", "something else the stack has to say")  # still shown
        _warn_from("harmony_bench.runner", "``build_loss`` would be deprecated soon")  # same text elsewhere
        _warn_from("mmseg.evaluation.metrics.iou_metric", "Mean of empty slice", RuntimeWarning)
    assert [str(w.message) for w in caught] == [
        "something else the stack has to say",
        "``build_loss`` would be deprecated soon",
        "Mean of empty slice",
    ]


def test_mmengine_logger_notices_are_dropped_and_others_kept(caplog):
    logger = logging.getLogger("test-mmengine-run")
    quiet.quiet_logger(logger)
    quiet.quiet_logger(logger)  # once is enough
    assert sum(isinstance(f, quiet.KnownNoise) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="test-mmengine-run"):
        logger.warning('"FileClient" will be deprecated in future. Please use io functions in ...')
        logger.warning('"HardDiskBackend" is the alias of "LocalBackend" and the former will be ...')
        logger.warning("The prefix is not set in metric class PerClassIoUMetric.")
        logger.warning("loss is nan at iteration 3")
    assert [r.getMessage() for r in caplog.records] == ["loss is nan at iteration 3"]


@pytest.mark.mm
def test_importing_the_dense_stack_prints_no_known_noise():
    """In a fresh process, as the CLI runs: register both toolboxes; stderr stays clean."""
    import subprocess
    import sys

    from .conftest import REPO_ROOT

    code = (
        "from harmony_bench.dense import register_into; register_into('mmseg'); register_into('mmdet');"
        "from mmengine.utils import is_installed; is_installed('mmdet'); is_installed('mmseg')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pkg_resources" not in done.stderr and "Warning" not in done.stderr, done.stderr
