"""Safe reading and cached, verified downloads (no network: file:// URLs and a patched urlopen)."""

import argparse
import fractions
import hashlib
import os
import pickle
import re
import urllib.error

import pytest
import torch

from harmony_bench.models import checkpoint_io
from harmony_bench.models.checkpoint_io import (
    ChecksumError,
    DownloadError,
    UntrustedCheckpointError,
    cache_path,
    read_checkpoint,
    resolve_source,
)

MARKER = "harmony_bench_pwned"


class Payload:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def test_malicious_pickle_is_refused_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint") as excinfo:
        read_checkpoint(path)
    assert "posix.system" in str(excinfo.value) or "os.system" in str(excinfo.value)
    assert not (tmp_path / MARKER).exists()


def test_argparse_namespace_is_allow_listed(tmp_path):
    path = tmp_path / "checkpoint.pth"
    args = argparse.Namespace(arch="vit_small", patch_size=16, lr=5e-4)
    torch.save({"teacher": {"backbone.cls_token": torch.ones(1, 1, 4)}, "args": args, "epoch": 3}, path)
    loaded = read_checkpoint(path)
    assert loaded["args"].arch == "vit_small" and loaded["epoch"] == 3


def test_trusted_checkpoint_unpickles_other_classes(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"w": torch.zeros(2), "best_acc1": fractions.Fraction(1, 3)}, path)
    with pytest.raises(UntrustedCheckpointError, match="fractions.Fraction"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust=True)["best_acc1"] == fractions.Fraction(1, 3)


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(3.0)}, str(path))
    assert torch.equal(read_checkpoint(path)["a"], torch.arange(3.0))


def test_file_url_download_is_cached_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARMONY_BENCH_OFFLINE", raising=False)
    release = tmp_path / "release" / "weights.pth"
    release.parent.mkdir()
    torch.save({"w": torch.ones(2)}, release)
    digest = hashlib.sha256(release.read_bytes()).hexdigest()
    url = release.as_uri()
    path = resolve_source(url, digest)
    assert path == cache_path(url) and path.read_bytes() == release.read_bytes()
    assert not list(path.parent.glob(".*.tmp"))
    release.unlink()  # the second call is served from the cache
    assert resolve_source(url, digest) == path


def test_sha256_mismatch_is_refused_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_BENCH_CACHE", str(tmp_path / "cache"))
    release = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(2)}, release)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        resolve_source(release.as_uri(), "0" * 64)
    assert not cache_path(release.as_uri()).exists()
    assert not list((tmp_path / "cache").rglob(".*.tmp"))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):  # local files declared by a card too
        resolve_source(str(release), "0" * 64)


def test_offline_error_names_url_and_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARMONY_BENCH_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(checkpoint_io.urllib.request, "urlopen", no_network)
    url = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth"
    expected = (
        tmp_path / "cache" / "dl.fbaipublicfiles.com" / "mae" / "pretrain" / "mae_pretrain_vit_base.pth"
    )
    with pytest.raises(DownloadError) as excinfo:
        resolve_source(url, None)
    assert url in str(excinfo.value) and str(expected) in str(excinfo.value)
    monkeypatch.setenv("HARMONY_BENCH_OFFLINE", "1")
    with pytest.raises(DownloadError, match="downloads are off"):
        resolve_source("hf-hub:timm/vit_base_patch16_clip_224.openai/open_clip_pytorch_model.bin")


def test_hf_hub_ids_map_to_resolve_urls(tmp_path):
    source = "hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K/open_clip_pytorch_model.bin"
    assert checkpoint_io.source_url(source) == (
        "https://huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/main/open_clip_pytorch_model.bin"
    )
    assert cache_path(source, tmp_path) == tmp_path.joinpath(
        "hf-hub", "laion", "CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_pytorch_model.bin"
    )


@pytest.mark.parametrize(
    ("write", "says"),
    [
        (lambda p: p.write_bytes(b""), "is empty (0 bytes): not a checkpoint"),
        (lambda p: p.write_text("hello world\n"), "is not a checkpoint: text (starts 'hello world"),
        (lambda p: p.write_bytes(os.urandom(4096)), "neither a torch.save file (zip archive or pickle)"),
        (
            lambda p: p.write_bytes(pickle.dumps({"a": 1})),
            "is a Python pickle, but not one written",
        ),
        (lambda p: _zip(p), "is a zip archive but not a PyTorch checkpoint"),
        (lambda p: _truncated(p), "is a truncated or damaged zip archive"),
        (lambda p: _truncated(p, legacy=True), "is a damaged or truncated PyTorch checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints_say_what_they_are_and_never_suggest_trust(tmp_path, write, says):
    from harmony_bench.models.checkpoint_io import CheckpointError

    path = tmp_path / "weights.pth"
    write(path)
    for trust in (False, True):  # trusting a file does not make it a checkpoint
        with pytest.raises(CheckpointError, match=re.escape(says)) as excinfo:
            read_checkpoint(path, trust=trust)
        assert "trust" not in str(excinfo.value) and not isinstance(excinfo.value, UntrustedCheckpointError)


def _zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not weights")


def _truncated(path, legacy=False):
    torch.save({"w": torch.ones(50_000)}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_preflight_scans_an_archive_for_unsafe_classes_without_running_it(tmp_path, monkeypatch):
    from harmony_bench.models.checkpoint_io import refuse_unsafe_globals

    monkeypatch.chdir(tmp_path)
    evil, fine = tmp_path / "evil.pth", tmp_path / "fine.pth"
    torch.save({"w": torch.zeros(1), "payload": Payload()}, evil)
    torch.save({"w": torch.zeros(1), "args": argparse.Namespace(lr=1.0)}, fine)  # allow-listed
    with pytest.raises(UntrustedCheckpointError, match=r"(posix|os)\.system.*--trust-checkpoint"):
        refuse_unsafe_globals(evil)
    refuse_unsafe_globals(fine)
    assert not (tmp_path / MARKER).exists()


SWITCHES = [("1", True), ("true", True), ("0", False), ("false", False), ("", False)]


@pytest.mark.parametrize(("value", "off"), SWITCHES)
def test_offline_switches_read_as_huggingface_reads_them(monkeypatch, value, off):
    """HARMONY_BENCH_OFFLINE=0 leaves downloads on, as HF_HUB_OFFLINE=0 does."""
    from harmony_bench.models.hub_files import offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HARMONY_BENCH_OFFLINE", value)
    assert offline() is off
