"""Named progress events: tasks emit them at fixed points of training, callers subscribe to them.

This is the one way to act at a point inside a running task without a task-specific global: tests
subscribe a callback that raises to simulate a crash at an exact iteration or epoch (and then check that
the run resumes to the same numbers); a progress display can subscribe to the same events.

Events and their keyword payload:

- ``train_iter`` (``iteration``, ``work_dir``): after every training iteration of an mmengine run
  (ADE20K, ADE20K linear, COCO; ``dense.engine``), on every rank, ``iteration`` counted from 1.
- ``epoch_end`` (``epoch``, ``work_dir``): on every rank once epoch ``epoch`` (0-based) of ImageNet
  fine-tuning is checkpointed and the ranks have met at the barrier.

A callback's exception is not caught: it stops the task exactly as a real failure there would.  Names
outside :data:`EVENTS` are refused, so a misspelt subscription fails instead of never firing.

Example::

    from harmony_bench import events

    def crash(iteration, work_dir):
        if iteration == 40:
            raise RuntimeError("simulated interruption")

    with events.subscribed("train_iter", crash):
        main(["run", ...])  # fails at iteration 40, its checkpoint kept
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EVENTS = ("train_iter", "epoch_end")

_subscribers: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}


def _check(event: str) -> None:
    if event not in _subscribers:
        raise ValueError(f"unknown event {event!r}; the events are {', '.join(EVENTS)}")


def subscribe(event: str, callback: Callable[..., Any]) -> Callable[[], None]:
    """Call ``callback(**payload)`` at every ``emit(event, ...)``; returns the function that unsubscribes."""
    _check(event)
    _subscribers[event].append(callback)

    def unsubscribe() -> None:
        if callback in _subscribers[event]:
            _subscribers[event].remove(callback)

    return unsubscribe


@contextmanager
def subscribed(event: str, callback: Callable[..., Any]) -> Iterator[None]:
    """:func:`subscribe` for the duration of a ``with`` block (unsubscribed even when the block raises)."""
    unsubscribe = subscribe(event, callback)
    try:
        yield
    finally:
        unsubscribe()


def emit(event: str, **payload: Any) -> None:
    """Call every subscriber of ``event`` with ``payload``, in subscription order."""
    _check(event)
    for callback in list(_subscribers[event]):
        callback(**payload)
