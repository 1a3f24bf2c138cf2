"""What a run tells its watchers as it goes, as plain data that crosses processes.

Events are sent with :func:`nstyle.pool.emit` from wherever the work runs (this process, a
local worker, a Ray task) and reach the subscriber of the innermost :func:`nstyle.pool.subscribe`
or :class:`~nstyle.pool.TaskPool` opened in this process: the progress bars, the UI, video and
batch. Nothing polls files or parses output for progress.

The iteration event is :class:`~nstyle.optimize.Progress` (losses, where the run is, and the
image on request; sent from another process it comes without the image and the state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .outcome import Outcome

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Progress:
    """An iteration finished: what a callback sees, and the event the bars and the UI hear."""

    iteration: int  # 1-based
    iterations: int
    losses: dict[str, float]
    image: (
        Callable[[], np.ndarray] | None
    )  # the current image as RGB uint8, made only when asked (None: from another process)
    state: Callable[[], Any] | None = None  # the optimiser's OptimizerState, made only when asked
    position: float | None = None  # iterations done, with fractions while a tiled scale is under way
    stage: str = ""  # where a multi-scale or tiled run is: "scale 3/4, tile 5/24"


@dataclass(frozen=True)
class StepFinished:
    """A step of the plan is done: a scale (whole or tiled) or a video frame."""

    kind: str  # "whole", "tiled" or "frame"
    where: str  # "scale 2 of 3", or "" for a run of one step
    iterations: int  # run in this step
    best_loss: float
    outcome: Outcome


@dataclass(frozen=True)
class RunFinished:
    """The engine ran its plan: how it ended, over how many iterations, and the best loss."""

    outcome: Outcome
    iterations: int
    best_loss: float


@dataclass(frozen=True)
class FrameFinished:
    """A video frame is stylized and written (0-based ``number`` in the clip, at ``path``)."""

    number: int
    path: str
    seconds: float


@dataclass(frozen=True)
class TrialFinished:
    """A trial of probe, grid, sweep or tune has a result (``status``: "ok" or "error")."""

    key: str
    status: str
    seconds: float
