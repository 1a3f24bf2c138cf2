"""Running many stylizations: in this process, in N local processes, or as Ray tasks.

A :class:`Trial` is plain data (paths and a config dict), so it pickles to a process or a
Ray worker; a :class:`TrialResult` comes back with the image as PNG bytes, and only the
caller writes files, so results land in one folder wherever :mod:`nstyle.pool` ran them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import NStyleError
from ..outcome import COMPLETED, Outcome
from ..pool import TaskPool, check_workers, limit_threads


@dataclass(frozen=True)
class Trial:
    """One stylization to run: inputs, a full config (``Config.to_dict()``), and how to name it."""

    key: str  # file stem of its image, unique within a run
    content: str
    style: str
    config: dict[str, Any]
    label: str = ""


@dataclass
class TrialResult:
    """What a trial gave: status, final losses (at the best iteration), time, and its image."""

    key: str
    status: str  # "ok", "error", or "stopped" (by a signal: not a result to keep)
    error: str | None = None
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    png: bytes | None = None
    outcome: Outcome = COMPLETED


def execute(trial: Trial, threads: int | None = None) -> TrialResult:
    """Run one trial; any failure is recorded in the result, never raised."""
    if threads:
        limit_threads(threads)
    start = time.perf_counter()
    try:
        from ..api import stylize
        from ..config import Config
        from ..io import png_bytes

        result = stylize(trial.content, trial.style, config=Config.from_dict(trial.config))
        if result.outcome.signum:  # a half-optimised image is no trial's result
            return TrialResult(trial.key, "stopped", result.outcome.describe(), outcome=result.outcome)
        losses = result.history[result.best_iteration - 1] if result.best_iteration else {}
        png = png_bytes(result.image, result.metadata())
        return TrialResult(trial.key, "ok", None, losses, time.perf_counter() - start, png, result.outcome)
    except NStyleError as e:
        return TrialResult(trial.key, "error", str(e), seconds=time.perf_counter() - start)
    except Exception as e:  # a trial's crash must not take the other trials down
        message = str(e).splitlines()[0] if str(e) else ""
        return TrialResult(trial.key, "error", f"{type(e).__name__}: {message}", seconds=time.perf_counter() - start)


def run_trials(trials: Sequence[Trial], workers: int = 1, ray: str | None = None) -> Iterator[TrialResult]:
    """Results in completion order. ``workers`` trials run at once, each on its share of the usable cores.

    ``ray`` is None (local), ``"local"`` (start Ray here) or a Ray cluster address.
    """
    check_workers(workers)  # here, not in the generator below, so it fails before any work
    return _results(trials, workers, ray)


def _results(trials: Sequence[Trial], workers: int, ray: str | None) -> Iterator[TrialResult]:
    with TaskPool(min(workers, max(1, len(trials))), ray) as pool:
        for _, result in pool.map_unordered(execute, trials):
            yield result
