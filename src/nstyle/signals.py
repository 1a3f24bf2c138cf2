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
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_FROM_TERMINAL = tuple(getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name))
_worker = False  # this process is a pool's worker (see leave_to_parent)

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


def leave_to_parent() -> None:
    """In a pool's worker: the terminal's SIGINT and SIGHUP reach the whole process group, and it is
    the parent that stops the run and ends its workers; here they are ignored, blocks included."""
    global _worker
    _worker = True
    for s in _FROM_TERMINAL:
        signal.signal(s, signal.SIG_IGN)


def _left_alone(signum: int) -> bool:
    """Whether a block leaves ``signum`` as it is: in a worker, or SIGHUP under ``nohup``."""
    if _worker and signum in _FROM_TERMINAL:
        return True
    return signum == getattr(signal, "SIGHUP", None) and signal.getsignal(signum) is signal.SIG_IGN


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
    handlers) the block does nothing. SIGINT and SIGTERM are always handled, even when the
    process started with them ignored (a background job of a non-interactive shell does:
    Ctrl-C or ``kill -INT`` must still stop the run and keep its picture). SIGHUP ignored at the
    start stays ignored: that is ``nohup``, asking the run to outlive its terminal. A pool's
    worker leaves the terminal's SIGINT and SIGHUP to its parent (:func:`leave_to_parent`).
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
    previous = {s: signal.signal(s, _handle) for s in HANDLED if not _left_alone(s)}
    hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    _depth = 1
    try:
        yield
    finally:
        _depth = 0
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)
