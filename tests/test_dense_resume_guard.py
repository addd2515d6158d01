"""The ADE20K/COCO resume guard: a work dir's checkpoints are continued only under their own run identity."""

from __future__ import annotations

import json

import pytest

from harmony_bench.dense.engine import IDENTITY_FILE, guard_resume
from harmony_bench.run_identity import CheckpointMismatchError

A = {"config": {"lr": 1e-4}}
B = {"config": {"lr": 8e-5}}


def checkpoint_of(work_dir, identity):
    (work_dir / "iter_16000.pth").write_bytes(b"weights")
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_16000.pth"))
    (work_dir / IDENTITY_FILE).write_text(json.dumps(identity))


def test_same_identity_resumes_and_another_is_refused(tmp_path):
    checkpoint_of(tmp_path, A)
    assert guard_resume(tmp_path, A, resume=True) is True
    with pytest.raises(CheckpointMismatchError, match="another configuration: "):
        guard_resume(tmp_path, B, resume=True)


def test_a_fresh_run_that_stops_before_its_first_save_never_hands_over_the_old_checkpoint(tmp_path):
    """Run A saved; run B started over (--no-resume) and died before saving; B's rerun must not load A's."""
    checkpoint_of(tmp_path, A)
    assert guard_resume(tmp_path, B, resume=False) is False  # B starts over: identity file now says B
    assert guard_resume(tmp_path, B, resume=True) is False  # B again, resuming: nothing of B's to resume
    assert json.loads((tmp_path / IDENTITY_FILE).read_text()) == B


def test_checkpoints_without_an_identity_are_not_resumed_blindly(tmp_path):
    checkpoint_of(tmp_path, A)
    (tmp_path / IDENTITY_FILE).unlink()
    with pytest.raises(CheckpointMismatchError, match=f"without {IDENTITY_FILE}"):
        guard_resume(tmp_path, A, resume=True)
    assert guard_resume(tmp_path, A, resume=False) is False  # --no-resume: the way out
