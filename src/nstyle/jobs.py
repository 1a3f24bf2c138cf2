"""One resume path: ``nstyle resume CHECKPOINT`` continues whatever run left the checkpoint.

An image's checkpoint holds the optimiser's state (:func:`nstyle.api.resume`); a video's or a
batch's holds the call that makes it and its arguments (:mod:`nstyle.checkpoints`), and
continuing it is that call again: it finds the frames or cells already finished and does the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import StylizeResult
from .api import resume as resume_image
from .checkpoints import Checkpoint, CheckpointError
from .config import Config
from .video import VideoResult, stylize_video
from .workflows import grid, probe, sweep
from .workflows.sweep import spec_of


def _video(a: dict[str, Any], progress: bool) -> VideoResult:
    return stylize_video(
        a["video"],
        a["styles"],
        a["output"],
        config=Config.from_dict(a["config"]),
        frame_iterations=a["frame_iterations"],
        temporal_weight=a["temporal_weight"],
        max_frames=a["max_frames"],
        workers=a["workers"],
        ray=a["ray"],
        progress=progress,
    )


def _grid(a: dict[str, Any], config: dict[str, Any], progress: bool) -> Path:
    return grid(
        a["contents"],
        a["styles"],
        Config.from_dict(config),
        a["out_dir"],
        workers=a["workers"],
        ray=a["ray"],
        progress=progress,
    )


def _probe(a: dict[str, Any], config: dict[str, Any], progress: bool) -> Path:
    return probe(
        a["content"],
        a["style"],
        Config.from_dict(config),
        a["out_dir"],
        layers=a["layers"],
        blocks=a["blocks"],
        kind=a["kind"],
        workers=a["workers"],
        ray=a["ray"],
        progress=progress,
    )


def _sweep(a: dict[str, Any], _config: dict[str, Any], progress: bool) -> Path:  # each trial's config is in the spec
    return sweep(spec_of(a["spec"]), a["out_dir"], workers=a["workers"], ray=a["ray"], progress=progress)


def _tune(a: dict[str, Any], _config: dict[str, Any], progress: bool) -> Path:
    from .workflows.tune import tune

    keys = ("preset", "config", "space", "budget", "size", "workers", "ray", "seed")
    return tune(a["content"], a["style"], a["out_dir"], progress=progress, **{k: a[k] for k in keys}).out_dir


BATCHES: dict[str, Callable[[dict[str, Any], dict[str, Any], bool], Path]] = {
    "grid": _grid,
    "probe": _probe,
    "sweep": _sweep,
    "tune": _tune,
}


def load(checkpoint: str | os.PathLike) -> Checkpoint:
    """The checkpoint, after checking that it can be continued from here (its inputs unchanged)."""
    saved = Checkpoint.load(checkpoint)
    if saved.kind == "image":
        saved.check_sources()
        return saved
    job = saved.job or {}
    if job.get("arguments") is None:
        raise CheckpointError("this checkpoint's run used in-memory images; continue it from Python with the same call")
    if saved.kind == "video" and job.get("call") == "video" or saved.kind == "batch" and job.get("call") in BATCHES:
        saved.check_files()
        return saved
    raise CheckpointError(f"checkpoint {checkpoint} is of a kind this nstyle cannot continue ({saved.kind})")


def resume(
    checkpoint: str | os.PathLike, *, progress: bool = False, **image: Any
) -> StylizeResult | VideoResult | Path:
    """Continue the run that left ``checkpoint``: an image (its result; ``image`` holds
    :func:`nstyle.api.resume`'s options), a video (its :class:`~nstyle.video.VideoResult`) or a
    batch of trials (its sheet's path)."""
    saved = load(checkpoint)
    if saved.kind == "image":
        return resume_image(checkpoint, progress=progress, **image)
    job: dict[str, Any] = saved.job  # type: ignore[assignment]
    if saved.kind == "video":
        return _video(job["arguments"], progress)
    return BATCHES[job["call"]](job["arguments"], saved.config, progress)
