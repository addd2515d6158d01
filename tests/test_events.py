"""Progress events: the one way tests (and progress displays) act at a point inside a running task."""

import re
from pathlib import Path

import pytest

from harmony_bench import events


def test_subscribers_get_the_payload_in_order_until_unsubscribed():
    seen = []
    first = events.subscribe("train_iter", lambda iteration, work_dir: seen.append(("a", iteration)))
    with events.subscribed("train_iter", lambda iteration, work_dir: seen.append(("b", iteration))):
        events.emit("train_iter", iteration=1, work_dir="w")
    events.emit("train_iter", iteration=2, work_dir="w")
    first()
    events.emit("train_iter", iteration=3, work_dir="w")
    assert seen == [("a", 1), ("b", 1), ("a", 2)]


def test_a_raising_subscriber_stops_the_emitter_and_is_still_unsubscribed():
    def crash(epoch, work_dir):
        raise RuntimeError(f"simulated crash after epoch {epoch}")

    with pytest.raises(RuntimeError, match="epoch 0"), events.subscribed("epoch_end", crash):
        events.emit("epoch_end", epoch=0, work_dir="w")
    events.emit("epoch_end", epoch=1, work_dir="w")  # nothing subscribed any more


def test_unknown_events_are_refused():
    with pytest.raises(ValueError, match="unknown event 'train_iteration'"):
        events.subscribe("train_iteration", print)
    with pytest.raises(ValueError, match="unknown event"):
        events.emit("epoch", epoch=0)


def test_no_module_keeps_a_hook_global():
    """The old per-module test hooks (``_after_train_iter``, ``_after_epoch``) are gone for good."""
    package = Path(events.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"^_after_\w+\s*=|^def _after_\w+\(", path.read_text(encoding="utf-8"), re.M)
    ]
    assert offenders == []
