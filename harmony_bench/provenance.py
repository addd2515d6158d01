"""Where and with what a run was measured: hardware, library versions, git state, file hashes.

Every result record carries this block so a number can be traced back to the
machine and code that produced it.  Collecting it must be cheap and must never
break a run: it is called after the task finished (or crashed), when the only
thing left to do is write the record.  So every probe degrades to ``None``
instead of raising, library versions come from installed package metadata
(importing mmcv just to read ``__version__`` would cost seconds and can fail
on a broken build), and the GPU is only queried when the run itself already
imported torch and CUDA is usable — a CPU-only run never initialises CUDA
because of its record.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Distribution names (as pip knows them) whose versions every record lists; the
# key in the record is the distribution name, so "open_clip_torch", not "open_clip".
LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "mmcv",
    "mmengine",
    "mmsegmentation",
    "mmdet",
    "pandas",
    "numpy",
    "harmony-bench",
)

SOURCE_ROOT = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 10


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _cpu_model() -> str | None:
    """CPU model name: /proc/cpuinfo on Linux (platform.processor() there is just 'x86_64')."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        name = _run_quiet(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or None


def _memory_gb() -> float | None:
    """Physical memory in GiB (POSIX sysconf); None where the OS does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return round(pages * page_size / 2**30, 2)


def _gpus() -> tuple[str | None, int]:
    """GPU model(s) and count, asked of torch only if the run already imported it.

    Importing torch here would add seconds to a run that never used it, and
    querying device names initialises CUDA; both are avoided unless the run
    itself had torch loaded and CUDA available.  Mixed models are joined.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None, 0
    try:
        if not torch.cuda.is_available():
            return None, 0
        count = torch.cuda.device_count()
        names = list(dict.fromkeys(torch.cuda.get_device_name(i) for i in range(count)))
        return (", ".join(names) or None), count
    except Exception:  # a broken driver must not cost the record
        return None, 0


def collect_hardware() -> dict[str, Any]:
    """The record's ``hardware`` block: CPU model and count, GPU model and count, memory."""
    gpu_model, gpu_count = _gpus()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu_model": gpu_model,
        "gpu_count": gpu_count,
        "memory_gb": _memory_gb(),
    }


def library_version(distribution: str) -> str | None:
    """Installed version of ``distribution`` from its metadata, without importing it; None if absent."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # corrupt metadata: unknown rather than a crash
        return None


def collect_software() -> dict[str, Any]:
    """The record's ``software`` block: Python, OS, CUDA (if torch is loaded) and library versions."""
    torch = sys.modules.get("torch")
    cuda = getattr(getattr(torch, "version", None), "cuda", None) if torch is not None else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": cuda if isinstance(cuda, str) else None,
        "libraries": {name: library_version(name) for name in LIBRARIES},
    }


def _run_quiet(argv: list[str], cwd: Path | None = None) -> str | None:
    """Run a short command and return its stripped stdout, or None on any failure."""
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            # status must not take .git/index.lock: a concurrent git command in
            # the checkout would otherwise fail because a benchmark was running.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(repo_dir: Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the harmony-bench source checkout; nulls when unknown.

    By default the directory above the ``harmony_bench`` package is asked, and
    only if it *is* the top of a git work tree: an installed copy in
    ``site-packages`` may sit inside some other repository (a virtualenv in a
    project), whose commit says nothing about harmony-bench.  ``dirty`` counts
    tracked files only, so result records written into ``results/`` do not
    mark every later run dirty.  A checkout without commits has commit null.
    """
    if shutil.which("git") is None:
        return {"commit": None, "dirty": None}
    directory = Path(repo_dir) if repo_dir is not None else SOURCE_ROOT
    if not directory.is_dir():
        return {"commit": None, "dirty": None}
    top = _run_quiet(["git", "rev-parse", "--show-toplevel"], cwd=directory)
    if top is None or (repo_dir is None and Path(top).resolve() != directory.resolve()):
        return {"commit": None, "dirty": None}
    commit = _run_quiet(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=directory)
    status = _run_quiet(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory)
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}
