"""SIGTERM and SIGHUP stop a run the way Ctrl-C does: the best image so far is kept.

A scheduler, ``timeout`` or a container stop sends SIGTERM, and a closed terminal SIGHUP; by
default either kills Python on the spot and an hour of optimisation is lost. Inside
:func:`stop_on_signals` the first of SIGINT, SIGTERM or SIGHUP raises :class:`Interrupted`, a
``KeyboardInterrupt``, which the optimisation loops already turn into "stop and keep the best
image". Any further signal is ignored until the block ends, so a second Ctrl-C or SIGTERM
cannot cut short the writing of that image.

A signal's exception can land where Python swallows it: in a weakref callback or a
finaliser (printed as "Exception ignored in ..."), or in library code that catches
everything. So the stop is also sticky: the loops call :func:`check` at each step, which
raises again once a signal has come, and such a swallowed exception is not printed.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

HANDLED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_depth = 0
_received: int | None = None
_deferring = False
_pending = False


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple[type, tuple[int]]:  # from a worker process, whole
        return type(self), (self.signum,)


def received() -> int | None:
    """The signal that stopped the current :func:`stop_on_signals` block, if one did."""
    return _received


def check() -> None:
    """Raise :class:`Interrupted` if a stop signal came in the current block and was not acted on.

    Called between steps of every loop (iterations, tiles, frames, trials): a stop whose
    first raise was swallowed still ends the run at the next step.
    """
    if _depth and _received is not None and not _deferring:
        raise Interrupted(_received)


def _unraisable(hook):  # type: ignore[no-untyped-def]
    """``sys.unraisablehook`` that drops a swallowed :class:`Interrupted` (:func:`check` acts on it)."""

    def silent(info) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(info.exc_value, Interrupted):
            hook(info)

    return silent


def _handle(signum: int, _frame: object) -> None:
    global _received, _pending
    if _received is None:
        _received = signum
        if _deferring:
            _pending = True
            return
        raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """A stop signal arriving inside the block takes effect when it ends.

    One optimisation step and its bookkeeping (history, best image, callbacks) then happen
    wholly or not at all, so the state a checkpoint saves after a stop is one the uninterrupted
    run also passed through, which is what makes a resumed run bit-identical.
    """
    global _deferring, _pending
    if _deferring:
        yield
        return
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _pending:
        _pending = False
        raise Interrupted(_received or signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM/SIGHUP raises :class:`Interrupted` and later ones wait.

    Nested blocks share the outermost one's handlers, so a stylize inside the CLI's block still
    leaves the CLI's save protected. Outside the main thread (where Python cannot install
    handlers) the block does nothing; a signal set to be ignored when the block starts stays
    ignored.
    """
    global _depth, _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:  # an outer block's handlers are in place
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    _received = None
    # A signal already ignored stays ignored: `nohup nstyle ...` goes on when its terminal closes,
    # and a pool's worker leaves the terminal's Ctrl-C to its parent.
    previous = {s: signal.signal(s, _handle) for s in HANDLED if signal.getsignal(s) is not signal.SIG_IGN}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)
