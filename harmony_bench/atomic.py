"""Atomic file writes: the one home for "a crash never leaves a torn or half-written file".

Every writer in harmony-bench that must not leave a partial file behind (records, checkpoints, suite
state, feature caches, exports, generated pages) goes through here.  A write goes to a temporary file
in the target's own directory (so the final rename never crosses a file system), is flushed and
fsynced, and is then published:

- :func:`atomic_write` *replaces* the target with ``os.replace`` (state files, caches, pages);
- :func:`publish_new` *never* replaces an existing target: it links the finished temp file into place
  (``os.link`` fails on an existing name) and falls back to an exclusive create-and-copy where the file
  system has no hard links.  Records use it so that two runs can never overwrite each other's result.

The directory is fsynced after the rename so the new name itself survives a power cut.  Temp names
start with a dot and end in ``.tmp``, carry the pid and a random part, and are removed on any error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Writer = Callable[[IO[bytes]], None]
# os.link errors that mean "this file system has no hard links" (some FUSE/SMB mounts); any other
# numbered error (EIO, ENOSPC, ...) is a real failure and propagates.
NO_HARDLINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same directory, hidden, unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry to disk (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, write: Writer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: Path, write: Writer) -> Path:
    """Call ``write(binary_file)`` on a temp file beside ``path``, then replace ``path`` with it."""
    path = Path(path)
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Replace ``path`` with ``obj`` as JSON (newline-terminated) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def publish_new(path: Path, write: Writer) -> Path:
    """Write ``path`` atomically, but only if it does not exist yet.

    Raises:
        FileExistsError: ``path`` already exists (it is left untouched).
    """
    path = Path(path)
    if path.exists():
        raise _exists_error(path)
    tmp = _write_temp(path, write)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise _exists_error(path) from None
        except OSError as exc:
            if exc.errno is not None and exc.errno not in NO_HARDLINK_ERRNOS:
                raise
            _copy_exclusive(tmp, path)  # no hard links here: exclusive create + copy, still never replaces
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "the file exists; it is never overwritten", str(path))


def _copy_exclusive(tmp: Path, final: Path) -> None:
    try:
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise _exists_error(final) from None
    try:
        with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        final.unlink(missing_ok=True)
        raise
