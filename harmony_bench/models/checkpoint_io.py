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
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from harmony_bench.atomic import atomic_write

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


TRUE_VALUES = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """An on/off environment switch, read as huggingface_hub reads ``HF_HUB_OFFLINE`` ("0", "false": off)."""
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


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
    digest = hashlib.sha256()

    def fetch(out: IO[bytes]) -> None:  # raising here leaves ``target`` untouched and no temp file
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        actual = digest.hexdigest()
        if sha256 and actual.lower() != sha256.lower():
            raise ChecksumError(f"sha256 mismatch for {url}: expected {sha256}, got {actual}; not cached")

    try:
        atomic_write(target, fetch)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"could not download {url} ({exc}). If this machine is offline, fetch the file elsewhere and "
            f"place it at {target}"
            + (f" (sha256 {sha256})" if sha256 else "")
            + ", or pass --checkpoint PATH."
        ) from exc
    return target


def resolve_source(source: str, sha256: str | None = None, *, offline: bool | None = None) -> Path:
    """A local file for ``source``: a path as is, a URL or ``hf-hub:`` id via the cache.

    Args:
        source: Local path, ``http(s)://`` or ``file://`` URL, or ``hf-hub:ORG/REPO/FILE``.
        sha256: Expected hex digest (from the card); checked for cached and downloaded files.
        offline: Never download; defaults to ``$HARMONY_BENCH_OFFLINE`` being 1/true/yes/on.

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
        offline = env_flag("HARMONY_BENCH_OFFLINE")
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


# What a legacy (pre-zip) ``torch.save`` file starts with: the pickled magic number 0x1950a86a20f9469cfc6c.
TORCH_LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
ZIP_LOCAL_HEADER = b"PK\x03\x04"


def sniff_checkpoint(path: Path, fmt: str | None = None) -> str:
    """What kind of checkpoint file ``path`` is, from its first bytes, without unpickling anything.

    Returns:
        ``"safetensors"``, ``"torchscript"``, ``"torch-zip"`` (``torch.save``) or ``"torch-legacy"``
        (``torch.save(..., _use_new_zipfile_serialization=False)``).

    Raises:
        CheckpointError: the file is none of these; the message says what it is instead (empty, text, a
            zip archive torch did not write, a truncated archive, a pickle that is not a checkpoint), so
            nobody is told to turn the safety check off for a file that is not a checkpoint at all.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(64)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint. Check the path or copy it again")
    if fmt == "safetensors" or path.suffix == ".safetensors":
        _check_safetensors_header(path, head, size)
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in name for name in names):
            return TORCHSCRIPT_FORMAT
        if any(name.endswith("data.pkl") for name in names):
            return "torch-zip"
        raise CheckpointError(
            f"{path} is a zip archive but not a PyTorch checkpoint (torch.save archives hold a data.pkl; "
            f"this one holds {', '.join(names[:3]) or 'nothing'}): not a checkpoint"
        )
    if head.startswith(ZIP_LOCAL_HEADER):
        raise CheckpointError(
            f"{path} is a truncated or damaged zip archive ({size:,} bytes, no central directory): a "
            "torch.save file cut short (an interrupted copy or download?). Copy or download it again"
        )
    if head[:1] == b"\x80" and TORCH_LEGACY_MAGIC in head[:24]:
        return "torch-legacy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(
            f"{path} is a Python pickle, but not one written by torch.save (no PyTorch magic number): "
            "not a checkpoint harmony-bench can read. Save the weights with torch.save(state_dict) or "
            "safetensors"
        )
    if _looks_like_safetensors(head, size):
        raise CheckpointError(
            f"{path} looks like a safetensors file but is named {path.name!r}: rename it to *.safetensors"
        )
    raise CheckpointError(f"{path} is not a checkpoint: {_what_it_is(head)}. Check the path")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length <= size - 8 and head[8:9] == b"{"


def _check_safetensors_header(path: Path, head: bytes, size: int) -> None:
    if _looks_like_safetensors(head, size):
        return
    try:
        kind = sniff_checkpoint(path, None) if path.suffix != ".safetensors" else None
    except CheckpointError as exc:
        what = str(exc).removeprefix(f"{path} ").removeprefix("is not a checkpoint: ")
        raise CheckpointError(
            f"{path} is not a safetensors file (the format its card reads): {what}"
        ) from None
    words = {"torch-zip": "torch.save archive", "torch-legacy": "legacy torch.save pickle"}
    found = (
        f"it is a {words.get(kind, kind)}: use a card of that format"
        if kind
        else f"it is {_what_it_is(head)}"
    )
    raise CheckpointError(
        f"{path} is not a safetensors file (the format its card reads; {size:,} bytes): {found}"
        + ("" if kind else ", or a damaged or truncated safetensors file")
    )


def _what_it_is(head: bytes) -> str:
    """A few words on what a file that is not a checkpoint looks like, from its first bytes."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return (
            "neither a torch.save file (zip archive or pickle) nor safetensors "
            f"(it starts with bytes {head[:8].hex()})"
        )
    if head.lstrip().startswith((b"{", b"[")):
        return f"JSON text (starts {text[:24]!r})"
    return f"text (starts {text[:24]!r})"


def refuse_unsafe_globals(path: Path) -> None:
    """Scan a ``torch.save`` archive's pickle (without running it) for classes outside the allow-list.

    Raises:
        UntrustedCheckpointError: it needs some; the message lists them and names ``--trust-checkpoint``.
    """
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # an archive the scanner cannot read: the load will say what is wrong
        return
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    unsafe = [name for name in needed if name not in allowed]
    if unsafe:
        raise UntrustedCheckpointError(
            f"refusing to fully unpickle {path}: loading it could run arbitrary code. It needs these "
            f"non-allow-listed globals: {', '.join(unsafe)}. If you trust where the file comes from, pass "
            "--trust-checkpoint (Python: trust_checkpoint=True)."
        )


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


def _damaged_message(path: Path, exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next(
        (line for line in lines if "error" in line.lower() or "EOF" in line), lines[0] if lines else ""
    )
    return (
        f"{path} is a damaged or truncated PyTorch checkpoint: torch could not read it "
        f"({type(exc).__name__}: {detail[:160]}). Copy or download it again"
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
    kind = sniff_checkpoint(path, fmt)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise CheckpointError(f"{path} is a damaged or truncated safetensors file ({exc})") from exc
    if fmt == TORCHSCRIPT_FORMAT:
        if kind != TORCHSCRIPT_FORMAT:
            raise CheckpointError(
                f"{path} is not a TorchScript archive, but the card's format says torchscript"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch deprecates jit; OpenAI's releases are jit
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    if kind == TORCHSCRIPT_FORMAT:
        raise CheckpointError(
            f"{path} is a TorchScript archive; load it through a card whose checkpoint format is "
            "'torchscript' (e.g. clip-vit-b16-openai), or export a plain state dict"
        )
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "Unsupported global" not in str(exc):  # no class refused: damaged
            raise CheckpointError(_damaged_message(path, exc)) from exc
        if not trust:
            raise UntrustedCheckpointError(_untrusted_message(path, exc)) from exc
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(_damaged_message(path, exc)) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a mapping of names to tensors")
    return obj
