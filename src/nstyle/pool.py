"""The parallel pool: a function over items in this process, in N local processes, or as Ray tasks.

Tiles of a print-size image, chunks of a clip and trials of probe, grid and sweep all run
through :class:`TaskPool`. Each worker limits its backend's threads to its share of the usable cores
(:mod:`nstyle.hardware`), so N workers do not fight over them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import NStyleError
from .events import Progress
from .hardware import share, usable_cores
from .signals import leave_to_parent

RAY_LOCAL = "local"  # --ray with no address: start a Ray instance on this machine

Subscriber = Callable[[Any], None]
_channel: Any = None  # in a worker process or Ray task: the queue its events go to
_here = threading.local()  # .subscriber: who hears events sent in this thread, by the pool it opened


def emit(event: Any) -> None:
    """Tell the subscriber ``event`` (see :mod:`nstyle.events`), from wherever this runs.

    In a worker the event goes through the pool's queue; in the process that subscribed it
    reaches the subscriber at once; with no one subscribed it goes nowhere.
    """
    sender()(event)


def sender() -> Subscriber:
    """Where :func:`emit` sends from this thread now, as a function another thread can call."""
    if _channel is not None:
        return _send_on(_channel)
    subscriber = getattr(_here, "subscriber", None)
    return subscriber if subscriber is not None else _nowhere


def _nowhere(event: Any) -> None:
    """No one subscribed."""


def _send_on(channel: Any) -> Subscriber:
    def send(event: Any) -> None:
        if isinstance(event, Progress):  # its image and state are made on request, here: not sent
            event = dataclasses.replace(event, image=None, state=None)
        channel.put(event)

    return send


@contextlib.contextmanager
def subscribe(subscriber: Subscriber | None) -> Iterator[None]:
    """``subscriber`` hears what is emitted in this thread (and by pools it opens) until the block ends;
    whoever subscribed before hears it too."""
    if subscriber is None:
        yield
        return
    previous = getattr(_here, "subscriber", None)
    _here.subscriber = subscriber if previous is None else _both(subscriber, previous)
    try:
        yield
    finally:
        _here.subscriber = previous


def _both(first: Subscriber, then: Subscriber) -> Subscriber:
    def hear(event: Any) -> None:
        first(event)
        then(event)

    return hear


_threads_limited = False


def limit_threads(threads: int) -> None:
    """Cap the backend's thread pools in this process (once, before its runtime starts)."""
    global _threads_limited
    if _threads_limited:
        return
    from .backends import ops

    ops().limit_threads(threads)
    _threads_limited = True


def check_workers(workers: int) -> None:
    """Workflows call this first, before they create or write anything."""
    if workers < 1:
        raise NStyleError(f"--workers: {workers} must be >= 1")


class TaskPool:
    """Runs a function over items in this process, in N local processes, or as Ray tasks.

    Open for many batches (a tiled image's passes and groups), so worker processes start, and
    load Keras's backend and the network, once. Local workers and Ray tasks each get their share of
    the usable cores (:mod:`nstyle.hardware`) as the backend's threads, so N workers do not fight
    over cores.

    Local workers ignore SIGINT and SIGHUP: a Ctrl-C or a closed terminal reaches the whole
    process group, and it is this process that stops the run, keeps what finished and ends
    the workers, instead of each worker dying with a traceback of its own.
    """

    def __init__(self, workers: int = 1, ray: str | None = None, on_event: Subscriber | None = None):
        check_workers(workers)
        self.workers, self.ray = workers, ray
        self.own = on_event  # None: the workers' events go to whoever subscribed around the pool
        self.on_event: Subscriber | None = None
        self.threads = share(workers)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._started_ray = False
        self._queue: Any = None
        self._drain: threading.Thread | None = None
        self._previous: Subscriber | None = None

    def __enter__(self) -> TaskPool:
        outer = sender()
        self.on_event = self.own or (None if outer is _nowhere else outer)
        self._previous, _here.subscriber = getattr(_here, "subscriber", None), self.on_event
        if self.ray is not None:
            self._ray, self._started_ray = _start_ray(self.ray)
            if self.on_event is not None:
                from ray.util.queue import Queue

                self._queue = Queue()
        elif self.workers > 1:
            context = multiprocessing.get_context("spawn")  # fork after the backend's runtime started is unsafe
            # SimpleQueue: a worker's put is written before its task's result is, so every event
            # of a finished task is delivered before the pool's closing marker.
            self._queue = context.SimpleQueue() if self.on_event is not None else None
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.threads, self._queue),
            )
        if self._queue is not None:
            self._drain = threading.Thread(target=self._deliver, daemon=True)
            self._drain.start()
        return self

    def _deliver(self) -> None:
        """The subscriber hears the workers' events, in this process, until the pool closes."""
        while True:
            if self._ray is None:
                event = self._queue.get()
            else:
                try:
                    event = self._queue.get(timeout=0.2)
                except Exception:  # Ray's queue is empty: look again, unless the pool is closing
                    if self._drain is None:
                        return
                    continue
            if isinstance(event, _Close):
                return
            try:
                self.on_event(event)  # type: ignore[misc]
            except Exception:  # a watcher's failure must not stop the work it watches
                pass

    def __exit__(self, *exc: object) -> None:
        _here.subscriber = self._previous
        self._close_events()
        if self._pool is not None:
            if exc[0] is not None:  # stopped or failed: the workers' current tasks go too, not on in the background
                for process in list((self._pool._processes or {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
        if self._started_ray:
            self._ray.shutdown()

    def _close_events(self) -> None:
        """Deliver what the workers sent, then stop listening."""
        drain, self._drain = self._drain, None
        if drain is None:
            return
        if self._ray is None:
            self._queue.put(_Close())  # after every event already sent: the pipe keeps their order
        drain.join(timeout=5)

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, fn(item))`` in completion order."""
        if self._ray is not None:
            # A worker process that dies (killed, out of memory) has its task run again elsewhere,
            # twice at most; a task that fails by itself raises here (trials record theirs instead).
            remote = self._ray.remote(num_cpus=self.threads, max_retries=2)(_with_threads)
            pending = {remote.remote(fn, item, self.threads, self._queue): i for i, item in enumerate(items)}
            while pending:
                done, _ = self._ray.wait(list(pending), num_returns=1)
                yield pending.pop(done[0]), self._ray.get(done[0])
        elif self._pool is not None:
            futures = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield futures[future], future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        else:
            for i, item in enumerate(items):
                yield i, fn(item)


def _start_worker(threads: int, channel: Any) -> None:
    """A local worker: stop signals from the terminal are for the parent (see :class:`TaskPool`);
    events go to ``channel``."""
    global _channel
    leave_to_parent()
    _channel = channel
    limit_threads(threads)


def _with_threads(fn: Callable[[Any], Any], item: Any, threads: int, channel: Any = None) -> Any:
    """A Ray task: its threads limited, its events sent to ``channel``."""
    global _channel
    limit_threads(threads)
    _channel = channel
    return fn(item)


class _Close:
    """The marker that ends a local pool's event delivery."""


def _start_ray(address: str) -> tuple[Any, bool]:
    """The ray module, initialised (``"local"``: a Ray on this machine), and whether this call started it."""
    try:
        import ray
    except ImportError:
        raise NStyleError("--ray needs Ray: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return ray, False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address == RAY_LOCAL:
            ray.init(num_cpus=usable_cores(), **options)
        else:
            ray.init(address=address, **options)
    except Exception as e:  # ConnectionError, ValueError...: say which address failed
        raise NStyleError(f"--ray: cannot start or reach Ray at '{address}': {e}") from None
    return ray, True
