"""One description of how a run ended, read back from records old and new; cores counted one way."""

from __future__ import annotations

import signal

import pytest

from nstyle.outcome import Ending, Outcome, Stop, stopped
from nstyle.signals import Interrupted


@pytest.mark.parametrize(
    "outcome, words",
    [
        (Outcome(), "completed"),
        (Outcome.by_signal(signal.SIGTERM), "stopped by SIGTERM"),
        (Outcome(Ending.CALLBACK), "stopped by a callback"),
        (Outcome(Ending.CALLBACK, "the Stop button"), "stopped by the Stop button"),
        (
            Outcome(Ending.CONVERGED, where="scale 2 of 3"),
            "L-BFGS converged (zero gradient on the pixels free to move) at scale 2 of 3",
        ),
        (Outcome(Ending.NO_PROGRESS), "L-BFGS made no progress (the line search found no lower loss)"),
    ],
)
def test_each_ending_in_words_and_through_a_record(outcome, words):
    assert outcome.describe() == words
    assert Outcome.from_record({"outcome": outcome.to_record()}) == outcome
    assert outcome.early == (outcome.ending is not Ending.COMPLETED)
    assert outcome.halts == (outcome.ending in (Ending.SIGNAL, Ending.CALLBACK))


@pytest.mark.parametrize(
    "old, expected",
    [  # the `result` of records nstyle wrote before outcomes: `interrupted` and `stop_reason`
        ({"interrupted": False, "stop_reason": "completed"}, Outcome()),
        ({"interrupted": True, "stop_reason": "interrupted"}, Outcome(Ending.SIGNAL)),
        (
            {"interrupted": True, "stop_reason": "interrupted at scale 2 of 3"},
            Outcome(Ending.SIGNAL, where="scale 2 of 3"),
        ),
        ({"interrupted": False, "stop_reason": "stopped by a callback"}, Outcome(Ending.CALLBACK)),
        (
            {"stop_reason": "L-BFGS made no progress (the gradient is zero: converged) at scale 1 of 2"},
            Outcome(Ending.CONVERGED, where="scale 1 of 2"),
        ),
        ({"stop_reason": "L-BFGS made no progress (the line search found no lower loss)"}, Outcome(Ending.NO_PROGRESS)),
        ({}, Outcome()),  # older still: neither key
    ],
)
def test_records_written_before_outcomes_still_read(old, expected):
    assert Outcome.from_record(old) == expected


def test_a_caught_stop_names_its_cause():
    assert stopped(Interrupted(signal.SIGHUP)) == Outcome(Ending.SIGNAL, "SIGHUP")
    assert stopped(KeyboardInterrupt()).signum == signal.SIGINT
    assert stopped(Stop("the test")) == Outcome(Ending.CALLBACK, "the test")


def test_an_interrupted_from_a_worker_unpickles_whole():
    import pickle

    again = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(again, Interrupted) and again.signum == signal.SIGTERM


def test_pools_count_the_cores_this_process_may_use(monkeypatch):
    """In a container or under taskset the affinity mask, not os.cpu_count(), sizes every pool."""
    import os

    from nstyle import hardware
    from nstyle import pool as runner

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert hardware.usable_cores() == 3
    assert runner.TaskPool(1).threads == 3 and runner.TaskPool(2).threads == 1 and runner.TaskPool(5).threads == 1
    ray = pytest.importorskip("ray")
    seen = {}

    def fake_init(**kwargs) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    runner._start_ray(runner.RAY_LOCAL)
    assert seen["num_cpus"] == 3


def test_an_ignored_signal_stays_ignored():
    """`nohup nstyle ...`: SIGHUP was ignored before the run, so a closed terminal does not stop it."""
    import os
    import time

    from nstyle.signals import received, stop_on_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
            assert received() is None
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_sigint_and_sigterm_are_handled_even_when_started_ignored():
    """Unlike SIGHUP under nohup, an inherited SIG_IGN for SIGINT or SIGTERM is no request to keep
    running: a background job starts with SIGINT ignored, and Ctrl-C must still stop it."""
    import os
    import time

    from nstyle.signals import received, stop_on_signals

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(signum, signal.SIG_IGN)
        try:
            with stop_on_signals():
                with pytest.raises(Interrupted):
                    os.kill(os.getpid(), signum)
                    time.sleep(1)
                assert received() == signum
            assert signal.getsignal(signum) is signal.SIG_IGN  # put back as it was
        finally:
            signal.signal(signum, previous)


def test_a_pool_worker_leaves_the_terminals_signals_to_its_parent(monkeypatch):
    import os
    import time

    from nstyle import signals

    monkeypatch.setattr(signals, "_worker", True)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP)}
    try:
        with signals.stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            assert signals.received() is None
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # its pool's terminate still stops it
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_swallowed_stop_still_stops_at_the_next_check(capsys):
    """A signal's exception raised inside a weakref callback is swallowed by Python; check() raises it again."""
    import gc
    import os
    import time
    import weakref

    from nstyle.signals import check, stop_on_signals

    class Thing:
        pass

    with stop_on_signals():
        thing = Thing()
        ref = weakref.ref(thing, lambda _ref: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.5)))
        del thing
        gc.collect()
        with pytest.raises(Interrupted) as caught:
            check()
        assert caught.value.signum == signal.SIGTERM and ref() is None
    assert "Traceback" not in capsys.readouterr().err  # Python's "Exception ignored in" report is silenced
