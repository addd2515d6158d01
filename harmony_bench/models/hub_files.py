"""Files of timm / open_clip / Hugging Face models, from the caches those libraries use.

A ``timm:`` or ``open_clip:`` backbone gets its weights where timm and open_clip would get them: the
Hugging Face hub cache (``hf_hub_download``; the file names are the libraries' own choice, safetensors
first) or, for releases that only have a URL, the library's URL cache.  Nothing is ever replaced by a
random init: a file that is neither cached nor downloadable is a :class:`HubFileMissing` error that
names the exact file, the command that downloads it and the cache folder it goes to.

Offline is ``HF_HUB_OFFLINE`` or ``HARMONY_BENCH_OFFLINE`` (read at call time, so tests can set it);
the hub cache is ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else huggingface_hub's default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from harmony_bench.models.checkpoint_io import DownloadError, env_flag


class HubFileMissing(DownloadError):
    """A model file is not cached and cannot be downloaded; the message says how to get it."""


def offline() -> bool:
    """True when downloads are off (``HF_HUB_OFFLINE`` or ``HARMONY_BENCH_OFFLINE``)."""
    return env_flag("HF_HUB_OFFLINE") or env_flag("HARMONY_BENCH_OFFLINE")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the library default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    """Where the hub cache keeps ``repo_id`` (``models--ORG--NAME``)."""
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def hf_file(
    repo_id: str,
    filenames: Iterable[str],
    *,
    what: str,
    revision: str | None = None,
    local_only: bool = False,
) -> Path:
    """The first of ``filenames`` that the hub repo has, from the cache or downloaded into it.

    Args:
        repo_id: ``ORG/NAME`` on the Hugging Face hub.
        filenames: Candidates in the library's order of preference (e.g. safetensors before .bin).
        what: Who needs the file, for the error message (``timm:vit_small_patch16_224.augreg_in21k``).
        revision: A branch, tag or commit (default: ``main``).
        local_only: Only look in the cache (``backbones show`` must not download).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    names = list(dict.fromkeys(filenames))
    reasons: list[str] = []
    cache_only = local_only or offline()
    for filename in names:
        try:
            path = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=str(hub_cache_dir()),
                local_files_only=cache_only,
            )
            return Path(path)
        except LocalEntryNotFoundError as exc:  # not cached, and offline or the hub unreachable
            reasons.append(f"{filename}: {_first_line(exc)}")
            cache_only = True  # unreachable: look for the other candidates in the cache only
        except EntryNotFoundError:  # online: the repo has no such file; try the next candidate
            reasons.append(f"{filename}: not in the repository")
        except Exception as exc:  # network, auth, unknown repo: say so with the way out
            reasons.append(f"{filename}: {type(exc).__name__}: {_first_line(exc)}")
    raise HubFileMissing(hf_missing_message(repo_id, names, what, reasons))


def hf_missing_message(repo_id: str, filenames: list[str], what: str, reasons: list[str]) -> str:
    """How to get a hub file onto this machine: the download command and the cache folder."""
    mode = (
        "downloads are off (HF_HUB_OFFLINE / HARMONY_BENCH_OFFLINE)"
        if offline()
        else "it could not be downloaded"
    )
    files = " or ".join(filenames)
    return (
        f"{what} needs {files} from the Hugging Face hub repository {repo_id}, which is not in the hub "
        f"cache ({hub_cache_dir()}) and {mode}. Get it where there is network with "
        f"`hf download {repo_id} {filenames[0]}` (huggingface_hub's CLI; python: "
        f"huggingface_hub.hf_hub_download('{repo_id}', '{filenames[0]}')), then copy the folder "
        f"{repo_folder(repo_id)} to this machine's hub cache (or point HF_HUB_CACHE at a copy); "
        f"or pass --checkpoint FILE with that file (https://huggingface.co/{repo_id}/tree/main). "
        f"Details: {'; '.join(reasons)}"
    )


def url_file(url: str, cache: Path, *, what: str, local_only: bool = False) -> Path:
    """A file a library fetches from a URL into ``cache`` (timm: torch hub; open_clip: ~/.cache/clip)."""
    target = cache / os.path.basename(url.split("?")[0])
    if target.is_file():
        return target
    if local_only or offline():
        raise HubFileMissing(
            f"{what} needs {url}, which is not cached at {target} and downloads are off "
            f"(HF_HUB_OFFLINE / HARMONY_BENCH_OFFLINE). Download it where there is network and place it at "
            f"{target}, or pass --checkpoint FILE."
        )
    import torch.hub

    try:
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:
        raise HubFileMissing(
            f"{what} needs {url}, which could not be downloaded ({_first_line(exc)}). Download it where "
            f"there is network and place it at {target}, or pass --checkpoint FILE."
        ) from exc
    return target


def snapshot_revision(path: Path) -> str | None:
    """The commit a hub-cache file belongs to (``…/snapshots/<commit>/file``), else None."""
    parts = path.parts
    if "snapshots" in parts:
        index = parts.index("snapshots")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
