"""``stylize``: the whole pipeline as one call, and the record that makes a run repeatable."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image

from . import color
from ._version import __version__
from .backbones import precision
from .backbones.seeded import GENERATOR
from .backends import backend_version, select, threads
from .checkpoints import Checkpoint, CheckpointPlan
from .config import Config, configure
from .engine import Engine, Run, RunResult, final_image
from .errors import RunError
from .io import Canvas, ImageSource, file_sha256, load_image, texture_settings
from .optimize import Callback
from .outcome import COMPLETED, Outcome
from .plan import GB, Plan
from .pool import subscribe
from .regions import load_regions
from .signals import Interrupted, stop_on_signals
from .solver import build_extractor


@dataclass
class StylizeResult:
    """The stylized image, the loss history and everything needed to run it again."""

    image: Image.Image
    history: list[dict[str, float]]
    config: Config
    best_loss: float
    best_iteration: int
    seconds: float
    outcome: Outcome = COMPLETED  # how the run ended: all its iterations, a signal, a callback's Stop, L-BFGS
    sources: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"  # what ``config.precision`` resolved to on this machine
    device: str = ""  # the run's first line: device, precision, threads, memory budget
    memory: dict[str, Any] = field(default_factory=dict)  # budget, estimated and measured peak, the plan
    high: np.ndarray | None = None  # the image in 16 bits per channel (uint16 RGB), when asked for

    def metadata(self) -> dict[str, Any]:
        """The run record written into PNG text and the JSON sidecar; ``nstyle reproduce`` reads it."""
        import keras

        return {
            "nstyle": __version__,
            **self.sources,
            "config": self.config.to_dict(),
            "result": {
                "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,  # JSON has no inf
                "best_iteration": self.best_iteration,
                "best_losses": self.history[self.best_iteration - 1] if self.best_iteration else {},
                "iterations_run": len(self.history),
                "outcome": self.outcome.to_record(),
                "seconds": round(self.seconds, 3),
                "precision": self.precision,
                "device": self.device,
                "memory": self.memory,
                "backend": keras.backend.backend(),
                **({"random_weights": GENERATOR} if self.config.weights.startswith("random") else {}),
            },
            "versions": {
                "python": platform.python_version(),
                keras.backend.backend(): backend_version(),
                "keras": keras.__version__,
                "numpy": np.__version__,
                "pillow": Image.__version__,
            },
        }


@stop_on_signals()
def stylize(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    *,
    preset: str = "default",
    config: Config | str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    checkpoint: CheckpointPlan | None = None,
    resume: Checkpoint | None = None,
    workers: int = 1,
    ray: str | None = None,
    bits: int = 8,
    **options: Any,
) -> StylizeResult:
    """Stylize ``content`` in the manner of ``style`` (or of several styles, blended).

    ``content`` and each style are paths, PIL images or arrays. Settings come from ``preset``,
    then ``config`` (a :class:`Config` replaces the preset; a TOML path is layered on it),
    then ``options`` (any :class:`Config` field, e.g. ``iterations=200, style_weight=1e5``).
    ``callbacks`` see every iteration; ``progress=True`` adds a progress bar, after a first line
    on stderr saying where it runs (device, precision, threads, memory budget). The network runs
    in ``precision`` (``auto`` follows the hardware, see :mod:`nstyle.backbones.precision`);
    what it resolved to is in the result's ``precision`` and its metadata. Ctrl-C, SIGTERM and
    SIGHUP end the run early with the best image so far; the result's ``outcome`` says how the
    run ended (:class:`~nstyle.outcome.Outcome`). A signal before the first iteration has
    finished leaves nothing to return: :class:`~nstyle.signals.Interrupted` is raised.

    Scales that do not fit ``max_memory`` run in tiles (:mod:`nstyle.plan`, :mod:`nstyle.tiles`),
    ``workers`` tiles at once in local processes, or as Ray tasks with ``ray`` (an address or
    "local"); a size that cannot fit at all is refused before any work. ``bits=16`` also keeps
    the result unrounded, in 16 bits per channel (``high``), for printing.

    ``checkpoint`` saves the run's state as it goes and when stopped (and deletes it when the run
    completes); ``resume`` continues a :class:`~nstyle.checkpoints.Checkpoint`, whose config
    then replaces ``preset``, ``config`` and ``options`` (see :mod:`nstyle.checkpoints`).
    """
    if resume is not None:
        config, options = Config.from_dict({**resume.config, "precision": resume.precision}), {}
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    run, choice = _prepare(content, styles, configure(preset, config, options), callbacks, checkpoint, resume)
    run.workers, run.ray, run.bits = workers, ray, bits
    engine = Engine(run)
    plan = engine.plan()
    device = f"{precision.device_line(choice, threads())}; memory budget {plan.budget / GB:.1f} GB"
    if choice.notice:
        warnings.warn(choice.notice, RuntimeWarning, stacklevel=2)
    bar = _progress_bar(run, plan, device) if progress else None
    start = time.perf_counter()
    done = RunResult(None, None, [])
    try:
        with subscribe(bar):
            done = engine.run(plan)
    finally:
        if bar is not None:
            bar.finish(done.outcome)
    if done.outcome.halts and not done.worked:
        raise Interrupted(done.outcome.signum) if done.outcome.signum else _nothing_done(done.outcome)
    if checkpoint is not None and not done.outcome.halts:
        checkpoint.path.unlink(missing_ok=True)  # done: nothing left to resume
    image, high = final_image(run, done)
    return StylizeResult(
        image,
        done.history,
        run.cfg,
        done.best_loss,
        done.best_iteration,
        time.perf_counter() - start,
        done.outcome,
        run.sources,
        choice.name,
        device,
        _memory_record(plan),
        high,
    )


def texture(
    style: ImageSource | Sequence[ImageSource],
    *,
    size: int = 512,
    preset: str = "default",
    config: Config | str | os.PathLike | None = None,
    **kwargs: Any,
) -> StylizeResult:
    """A ``size`` px square texture from ``style`` alone (no photo), e.g. 2048 px from a 512 px sample.

    Everything :func:`stylize` takes works here (``tileable="wrap"`` for one that tiles without
    a seam, ``look_size``, ``callbacks``, ``checkpoint``...); :func:`~nstyle.io.texture_settings`
    are the defaults under them.
    """
    first = style[0] if isinstance(style, (list, tuple)) else style
    options = {**texture_settings(first, size), **kwargs, "size": size}
    return stylize(Canvas(size, size), style, preset=preset, config=config, **options)


def _prepare(
    content: ImageSource,
    styles: list[ImageSource],
    cfg: Config,
    callbacks: Sequence[Callback],
    checkpoint: CheckpointPlan | None,
    resume: Checkpoint | None,
) -> tuple[Run, precision.Choice]:
    """The run's images loaded, its seed drawn when none was given, and its feature network built."""
    if cfg.seed is None:
        cfg = dataclasses.replace(cfg, seed=int(np.random.SeedSequence().entropy % 2**32))
    cfg.check_styles(len(styles))
    select(cfg.backend or None)  # a backend other than the one Keras runs on here is a clear error
    content_src = load_image(content, "content image")
    style_srcs = [load_image(s, "style image") for s in styles]
    if cfg.preserve_color == "histogram":
        style_srcs = [color.match_histogram(s, content_src) for s in style_srcs]
    choice = precision.resolve(cfg.precision, cfg.optimizer)
    extractor = build_extractor(cfg, choice.name)
    sources = {"content": _describe_source(content), "styles": [_describe_source(s) for s in styles]}
    masks = [p for p in (cfg.mask, *cfg.style_masks) if p is not None]
    if masks:
        sources["masks"] = [_describe_source(p) for p in masks]
    regions = load_regions(cfg.mask, cfg.style_masks, len(styles), cfg.style_blend, content_src.size)
    return Run(
        cfg,
        extractor,
        choice.name,
        content_src,
        style_srcs,
        sources,
        list(callbacks),
        checkpoint,
        resume,
        regions=regions,
    ), choice


def _progress_bar(run: Run, plan: Plan, device: str) -> Any:
    """The first line (where it runs), the tile plan when there is one, and a bar to hear every iteration."""
    from .callbacks import ProgressBar

    print(device, file=sys.stderr)
    if plan.tiled:
        print("\n".join(plan.describe()), file=sys.stderr)
    return ProgressBar(run.cfg.total_iterations)


def _memory_record(plan: Plan) -> dict[str, Any]:
    """Budget, estimated and measured peak, and the plan, for the run record."""
    steps = [
        {"height": s.height, "width": s.width, "iterations": s.iterations, "tile": s.tile, "overlap": s.overlap}
        for s in plan.steps
    ]
    return {
        "budget_gb": round(plan.budget / GB, 3),
        "estimated_peak_gb": round(plan.peak / GB, 3),
        "measured_peak_gb": round(peak_resident_bytes() / GB, 3),
        "plan": plan.describe(),
        "steps": steps,
    }


def resume(
    checkpoint: str | os.PathLike,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    every: int | None = None,
) -> StylizeResult:
    """Continue the stopped run saved in ``checkpoint`` (a file a run with a checkpoint left).

    Its input files must be the ones it started with (checked by hash). It keeps checkpointing
    to the same file, every ``every`` iterations or else every 5 minutes, and deletes it when done.
    """
    saved = Checkpoint.load(checkpoint)
    content, styles = saved.check_sources()
    plan = CheckpointPlan(Path(checkpoint), every, None if every else 300.0, saved.output)
    return stylize(content, styles, callbacks=callbacks, progress=progress, checkpoint=plan, resume=saved)


def peak_resident_bytes() -> int:
    """This process's peak resident memory so far.

    On Linux the address space's high-water mark (``VmHWM``): ``ru_maxrss`` survives ``exec``,
    so a process started from a large one would report its parent's size. Elsewhere
    ``ru_maxrss`` (kilobytes, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _nothing_done(outcome: Outcome) -> NoReturn:
    """A callback's Stop before the first iteration finished: there is no image to return."""
    raise RunError(f"{outcome.describe()} before the first iteration finished: no image was computed")


def _describe_source(source: ImageSource) -> dict[str, Any] | None:
    """Path and content hash of a file input (None for in-memory images), for reproduce."""
    if isinstance(source, Canvas):
        return source.record()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        return {"path": str(path), "sha256": file_sha256(path)}
    return None
