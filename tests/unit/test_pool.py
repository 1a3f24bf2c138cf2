"""The pool's event channel: what work emits reaches the subscriber, from this process or from workers."""

from __future__ import annotations

import os

import pytest

from nstyle.events import FrameFinished
from nstyle.pool import TaskPool, emit


def frames(first: int) -> int:
    """Work that reports as it goes: three frames from ``first``; returns the process that did it."""
    for number in range(first, first + 3):
        emit(FrameFinished(number, f"frame_{number}.png", 0.0))
    return os.getpid()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_every_event_reaches_the_subscriber_before_the_pool_closes(workers):
    heard: list[FrameFinished] = []
    with TaskPool(workers, on_event=heard.append) as pool:
        pids = {pid for _, pid in pool.map_unordered(frames, [0, 10, 20])}
    assert sorted(e.number for e in heard) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert (os.getpid() in pids) == (workers == 1)  # in this process, or in the workers


def test_with_no_pool_open_an_event_goes_nowhere():
    emit(FrameFinished(0, "x.png", 0.0))  # no subscriber: nothing happens, nothing fails
    heard: list[FrameFinished] = []
    with TaskPool(1, on_event=heard.append):
        emit(FrameFinished(1, "y.png", 0.0))
    emit(FrameFinished(2, "z.png", 0.0))
    assert [e.number for e in heard] == [1]
