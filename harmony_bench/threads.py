"""How many CPU threads torch computes with: the cores this process may use, minus its data-loader workers.

torch's default is the number of physical cores of the *machine*.  Under Slurm, in a container with a
CPU quota, or with ``taskset``, the process may use far fewer, and torch's threads then fight over
them (and with the data-loader worker processes, one thread each) instead of computing: on a busy
2-core machine the smoke pretraining ran 4-10x slower with two threads than with one.  So
every ``run`` and ``pretrain`` sets the intra-op threads to

    cores available to the process (``os.sched_getaffinity``, capped by a cgroup CPU quota)
    - data-loader workers (the largest ``num_workers`` of the run's config), at least 1,

unless the user chose: ``HARMONY_BENCH_THREADS=N`` sets N; an explicit ``OMP_NUM_THREADS`` (torch
reads it at import) is left as it is.  The dense tasks' ``cpu_threads`` setting still wins for
their CPU runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "HARMONY_BENCH_THREADS"


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs allowed by a cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us``) quota, if any."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def max_workers(config: Mapping[str, Any]) -> int:
    """The largest ``num_workers`` anywhere in a (nested) config, dotted mmengine keys included."""
    found = 0
    for key, value in config.items():
        if isinstance(value, Mapping):
            found = max(found, max_workers(value))
        elif (
            str(key).rsplit(".", 1)[-1] == "num_workers"
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            found = max(found, value)
    return found


def intra_op_threads(workers: int = 0) -> int | None:
    """The thread count to use, or None when the user set ``OMP_NUM_THREADS`` (torch already follows it).

    Raises:
        ValueError: ``HARMONY_BENCH_THREADS`` is not a positive integer.
    """
    explicit = os.environ.get(ENV, "").strip()
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise ValueError(f"{ENV}={explicit!r}: expected a positive number of threads, e.g. {ENV}=4")
        return int(explicit)
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, available_cores() - max(0, int(workers)))


def configure_threads(workers: int = 0) -> int:
    """Set torch's intra-op threads (see the module docstring); return the number in effect."""
    import torch

    threads = intra_op_threads(workers)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.debug(
            "torch threads: %d (%d cores available, %d data-loader workers)",
            threads,
            available_cores(),
            workers,
        )
    return torch.get_num_threads()
