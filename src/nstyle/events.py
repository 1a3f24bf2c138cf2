"""What a run tells its watchers as it goes, as plain data that crosses processes.

Events are sent with :func:`nstyle.pool.emit` from wherever the work runs (this process, a
local worker, a Ray task) and reach the subscriber the :class:`~nstyle.pool.TaskPool` was
opened with, in this process: the progress bar, the UI. Nothing polls files for progress.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameFinished:
    """A video frame is stylized and written (0-based ``number`` in the clip, at ``path``)."""

    number: int
    path: str
    seconds: float
