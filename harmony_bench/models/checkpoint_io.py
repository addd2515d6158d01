"""Reading checkpoint files safely, and fetching released ones into a cache.

Checkpoints are untrusted input.  By default a file is read with
``torch.load(weights_only=True)`` (tensors, containers and primitive types
only) or with safetensors.  Research checkpoints often pickle their training
arguments (an ``argparse.Namespace`` under ``args`` in SLIP, iBOT and DINO full
checkpoints): those few harmless classes are on an allow-list.  Anything else
that would need full unpickling, which can run arbitrary code, is refused
unless the caller passes ``trust_checkpoint=True`` (``--trust-checkpoint`` on
the command line).  TorchScript archives (OpenAI CLIP releases) are read with
``torch.jit.load`` only when the card's checkpoint format says ``torchscript``.

Downloads go to ``$HARMONY_BENCH_CACHE`` (default
``~/.cache/harmony-bench/checkpoints``) under a readable path derived from the
URL, are checked against the card's sha256 when it has one, and are published
with an atomic rename, so the cache never holds a partial or corrupt file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import pickle
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Classes that research checkpoints pickle next to their weights and that are
# harmless to rebuild: argparse arguments, paths inside them, numpy scalars.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, pathlib.PosixPath, pathlib.WindowsPath]
try:  # numpy scalars (e.g. a best accuracy stored as numpy.float64)
    import numpy as np

    SAFE_GLOBALS += [np.dtype, np.float64, np.float32, np.int64]
    _core = np._core if hasattr(np, "_core") else np.core
    _scalar = getattr(_core.multiarray, "scalar", None)
    if _scalar is not None:
        SAFE_GLOBALS.append(_scalar)
    SAFE_GLOBALS += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
except ImportError:  # pragma: no cover - numpy ships with torch
    pass

TORCHSCRIPT_FORMAT = "torchscript"
CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint cannot be read as asked; the message says what to do."""


class UntrustedCheckpointError(CheckpointError):
    """The file needs full unpickling (which can run code) and the caller did not trust it."""


class ChecksumError(CheckpointError):
    """A file's sha256 differs from the one its card declares."""


class DownloadError(CheckpointError):
    """A release could not be downloaded (offline, moved); the message names the cache path to fill."""


def cache_dir() -> Path:
    """Where downloads live: ``$HARMONY_BENCH_CACHE``, else ``~/.cache/harmony-bench/checkpoints``."""
    value = os.environ.get("HARMONY_BENCH_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "harmony-bench" / "checkpoints"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_remote(source: str) -> bool:
    """True for sources that are fetched into the cache (URLs and ``hf-hub:`` ids)."""
    return source.startswith(("http://", "https://", "file://", "hf-hub:"))


def source_url(source: str) -> str:
    """The URL a remote source is fetched from.

    ``hf-hub:ORG/REPO/PATH/IN/REPO`` (optionally ``ORG/REPO@REVISION/PATH``) maps to the
    Hugging Face ``resolve`` URL of that file.
    """
    if not source.startswith("hf-hub:"):
        return source
    parts = source[len("hf-hub:") :].split("/")
    if len(parts) < 3:
        raise CheckpointError(f"hf-hub source {source!r} must look like 'hf-hub:ORG/REPO/FILE'")
    org, repo, filename = parts[0], parts[1], "/".join(parts[2:])
    repo, _, revision = repo.partition("@")
    return f"https://huggingface.co/{org}/{repo}/resolve/{revision or 'main'}/{filename}"


def cache_path(source: str, root: Path | None = None) -> Path:
    """The exact file a remote source is cached as: ``<cache>/<host>/<url path>``."""
    root = root if root is not None else cache_dir()
    if source.startswith("hf-hub:"):
        return root.joinpath("hf-hub", *source[len("hf-hub:") :].split("/"))
    parsed = urllib.parse.urlparse(source)
    parts = [p for p in urllib.parse.unquote(parsed.path).split("/") if p not in ("", ".", "..")]
    return root.joinpath(parsed.netloc or "local", *parts)


def verify_sha256(path: Path, expected: str | None, what: str) -> str:
    """Hash ``path``; raise :class:`ChecksumError` when ``expected`` is given and differs."""
    actual = sha256_of(path)
    if expected and actual.lower() != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {what}: expected {expected}, got {actual} ({path}). "
            "The file is corrupt or not the released checkpoint; delete it and download it again."
        )
    return actual


def download(url: str, target: Path, sha256: str | None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``target`` atomically, verifying sha256 before publishing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        actual = digest.hexdigest()
        if sha256 and actual.lower() != sha256.lower():
            raise ChecksumError(f"sha256 mismatch for {url}: expected {sha256}, got {actual}; not cached")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"could not download {url} ({exc}). If this machine is offline, fetch the file elsewhere and "
            f"place it at {target}"
            + (f" (sha256 {sha256})" if sha256 else "")
            + ", or pass --checkpoint PATH."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_source(source: str, sha256: str | None = None, *, offline: bool | None = None) -> Path:
    """A local file for ``source``: a path as is, a URL or ``hf-hub:`` id via the cache.

    Args:
        source: Local path, ``http(s)://`` or ``file://`` URL, or ``hf-hub:ORG/REPO/FILE``.
        sha256: Expected hex digest (from the card); checked for cached and downloaded files.
        offline: Never download; defaults to ``$HARMONY_BENCH_OFFLINE`` being set to a non-empty value.

    Returns:
        The path of the (verified) file.
    """
    if not is_remote(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if sha256:
            verify_sha256(path, sha256, str(path))
        return path
    target = cache_path(source)
    url = source_url(source)
    if target.is_file():
        verify_sha256(target, sha256, f"cached {url}")
        return target
    if offline is None:
        offline = bool(os.environ.get("HARMONY_BENCH_OFFLINE"))
    if offline:
        raise DownloadError(
            f"{url} is not in the cache and downloads are off (HARMONY_BENCH_OFFLINE). Place the file at "
            f"{target}" + (f" (sha256 {sha256})" if sha256 else "") + ", or pass --checkpoint PATH."
        )
    return download(url, target, sha256)


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript zip archive (it has a ``code/`` directory next to ``data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _untrusted_message(path: Path, exc: Exception) -> str:
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # the probe itself may fail on odd files; the original error still explains
        needed = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    unsafe = [name for name in needed if name not in allowed]
    listing = f" It needs these non-allow-listed globals: {', '.join(unsafe)}." if unsafe else ""
    return (
        f"refusing to fully unpickle {path}: loading it could run arbitrary code.{listing} "
        "If you trust where the file comes from, pass --trust-checkpoint (Python: trust_checkpoint=True). "
        f"(torch said: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    )


def read_checkpoint(path: str | Path, *, fmt: str | None = None, trust: bool = False) -> Mapping[str, Any]:
    """Read a checkpoint file into its top-level container (a mapping), without running code.

    Args:
        path: The file.
        fmt: The card's checkpoint format; ``"torchscript"`` reads a TorchScript archive's
            ``state_dict()``, ``"safetensors"`` (or a ``.safetensors`` suffix) reads safetensors.
        trust: Fall back to full unpickling when the allow-listed safe load fails.

    Returns:
        The loaded object; converters unwrap containers such as ``state_dict`` or ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if fmt == "safetensors" or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if fmt == TORCHSCRIPT_FORMAT:
        if not is_torchscript(path):
            raise CheckpointError(
                f"{path} is not a TorchScript archive, but the card's format says torchscript"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch deprecates jit; OpenAI's releases are jit
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    if is_torchscript(path):
        raise CheckpointError(
            f"{path} is a TorchScript archive; load it through a card whose checkpoint format is "
            "'torchscript' (e.g. clip-vit-b16-openai), or export a plain state dict"
        )
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise UntrustedCheckpointError(_untrusted_message(path, exc)) from exc
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a mapping of names to tensors")
    return obj
