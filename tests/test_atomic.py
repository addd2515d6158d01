import os

import pytest

from harmony_bench.atomic import atomic_write, atomic_write_json, atomic_write_text, publish_new


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_json(target, {"b": 1, "a": 2})
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_publish_new_never_overwrites(tmp_path):
    target = tmp_path / "record.json"
    publish_new(target, lambda h: h.write(b"first"))
    with pytest.raises(FileExistsError, match="never overwritten"):
        publish_new(target, lambda h: h.write(b"second"))
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["record.json"]


def test_publish_new_without_hard_links(tmp_path, monkeypatch):
    def no_link(*_):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "r.json"
    publish_new(target, lambda h: h.write(b"data"))
    assert target.read_bytes() == b"data"
    with pytest.raises(FileExistsError):
        publish_new(target, lambda h: h.write(b"other"))
    assert target.read_bytes() == b"data"
