"""``stylize``: the whole pipeline as one call, and the record that makes a run repeatable."""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np
from PIL import Image

from . import color
from ._version import __version__
from .checkpoints import Checkpoint, CheckpointPlan, CheckpointWriter
from .backbones import FeatureExtractor, feature_extractor, get_backbone, load_model, precision
from .config import MIN_SIZE, Config, resolve
from .errors import ConfigError, RunError
from .io import ImageSource, file_sha256, fit, fitted, load_image
from ._tf import threads
from .losses import StyleTransferLoss, network_input, objective, tf
from .optimize import Callback, Optimizer, OptimizerState
from .outcome import COMPLETED, Outcome, stopped
from .plan import GB, MIN_OVERLAP, MemoryModel, Plan, Step, check_budget, make_plan
from .tiles import TileProgress, layer_names, run_tiled, settings_of
from .signals import Interrupted, stop_on_signals


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
            },
            "versions": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
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
    cfg = _configure(preset, config, options)
    if cfg.seed is None:
        cfg = dataclasses.replace(cfg, seed=int(np.random.SeedSequence().entropy % 2**32))
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    cfg.check_styles(len(styles))
    content_src = load_image(content, "content image")
    style_srcs = [load_image(s, "style image") for s in styles]
    if cfg.preserve_color == "histogram":
        style_srcs = [color.match_histogram(s, content_src) for s in style_srcs]

    backbone = get_backbone(cfg.backbone)
    choice = precision.resolve(cfg.precision, cfg.optimizer)
    extractor = feature_extractor(backbone, load_model(cfg.backbone, cfg.weights), layer_names(cfg), choice.name)
    sizes = scale_sizes(cfg)
    per_scale = list(cfg.scale_iterations) or [cfg.iterations] * cfg.scales
    plan = plan_run(cfg, extractor, choice.name, [fitted(*content_src.size, s)[::-1] for s in sizes], per_scale, workers)

    device = f"{precision.device_line(choice, threads())}; memory budget {plan.budget / GB:.1f} GB"
    callbacks = list(callbacks)
    bar = None
    if choice.notice:
        warnings.warn(choice.notice, RuntimeWarning, stacklevel=2)
    if progress:
        print(device, file=sys.stderr)
        if plan.tiled:
            print("\n".join(plan.describe()), file=sys.stderr)
        from .callbacks import ProgressBar

        bar = ProgressBar(cfg.total_iterations)
        callbacks.insert(0, bar)
    start = time.perf_counter()
    history: list[dict[str, float]] = list(resume.earlier_history) if resume else []
    pixels: np.ndarray | None = None  # the previous scale's result, RGB uint8
    high: np.ndarray | None = None  # the last scale's result in 16 bits, when asked for
    outcome, best_loss, best_iteration = COMPLETED, math.inf, 0
    worked = resume is not None  # whether any pixel has been optimised: else a stop leaves nothing to keep
    sources = {"content": _describe_source(content), "styles": [_describe_source(s) for s in styles]}
    whole = _WholeScales(cfg, extractor, choice.name)
    try:
        for step in plan.steps:
            if resume is not None and step.scale - 1 < resume.scale:
                continue  # finished before the checkpoint: its result is in the saved image
            where = f"scale {step.scale} of {len(plan.steps)}" if len(plan.steps) > 1 else ""
            try:
                scale_outcome = _run_step(step, cfg, extractor, whole, choice.name, content_src, style_srcs, pixels,
                                          callbacks, history, checkpoint, sources, resume, workers, ray, bits)  # fmt: skip
            except KeyboardInterrupt as e:  # between two scales' optimisations: the coarser result stands
                if pixels is None:
                    raise
                outcome = stopped(e).at(where)
                break
            if scale_outcome.history:  # else the previous scale's best stands
                best_iteration, best_loss = len(history) + scale_outcome.best_iteration, scale_outcome.best_loss
            history += scale_outcome.history
            worked = worked or scale_outcome.worked
            pixels, high = scale_outcome.pixels, scale_outcome.high
            if not outcome.early:
                outcome = scale_outcome.outcome.at(where)
            if scale_outcome.outcome.halts:
                break
    finally:
        if bar is not None:
            bar.finish(outcome)
    if outcome.halts and not worked:
        raise Interrupted(outcome.signum) if outcome.signum else _nothing_done(outcome)
    if checkpoint is not None and not outcome.halts:
        checkpoint.path.unlink(missing_ok=True)  # done: nothing left to resume
    image = Image.fromarray(pixels)
    if cfg.preserve_color == "luminance":
        image = color.restore_chroma(image, content_src)
        if high is not None:
            rgb = color.restore_chroma_array(high.astype(np.float64) * (255 / 65535), content_src)
            high = np.clip(np.rint(rgb * (65535 / 255)), 0, 65535).astype(np.uint16)
    return StylizeResult(
        image=image,
        history=history,
        config=cfg,
        best_loss=best_loss,
        best_iteration=best_iteration,
        seconds=time.perf_counter() - start,
        outcome=outcome,
        sources=sources,
        precision=choice.name,
        device=device,
        memory={"budget_gb": round(plan.budget / GB, 3), "estimated_peak_gb": round(plan.peak / GB, 3),
                "measured_peak_gb": round(peak_resident_bytes() / GB, 3), "plan": plan.describe(),
                "steps": [{"height": s.height, "width": s.width, "iterations": s.iterations, "tile": s.tile,
                           "overlap": s.overlap} for s in plan.steps]},  # fmt: skip
        high=high,
    )


def _run_step(step: Step, cfg: Config, extractor: FeatureExtractor, whole: _WholeScales, precision_name: str,
              content_src: Image.Image, style_srcs: list[Image.Image], pixels: np.ndarray | None,
              callbacks: list[Callback], history: list[dict[str, float]], checkpoint: CheckpointPlan | None,
              sources: dict[str, Any], resume: Checkpoint | None, workers: int, ray: str | None,
              bits: int) -> _ScaleOutcome:  # fmt: skip
    """One scale of the plan, whole or tiled, from the coarser ``pixels`` or the run's start."""
    content_img, style_imgs = _scale_images(cfg, max(step.height, step.width), content_src, style_srcs)
    stage = f"scale {step.scale}/{cfg.scales}, " if cfg.scales > 1 else ""
    state = resume.state if resume is not None and resume.scale == step.scale - 1 else None
    if step.tiled:
        saver = _tile_saver(checkpoint, cfg, sources, precision_name, step.scale - 1, history)
        progress_so_far = (TileProgress(state.image[0], resume.tiles["pass"], resume.tiles["done"], state.history)
                           if state is not None and resume is not None and resume.tiles else None)  # fmt: skip
        return _tiled_scale(step, cfg, extractor, precision_name, content_img, style_imgs, pixels, callbacks, history,
                            stage, workers, ray, bits, progress_so_far, saver)  # fmt: skip
    return _whole_scale(cfg, whole, step.iterations, content_img, style_imgs, pixels, callbacks, history, stage,
                        checkpoint, sources, step.scale - 1, state, bits)  # fmt: skip


def plan_run(cfg: Config, extractor: FeatureExtractor, precision_name: str, shapes: list[tuple[int, int]],
             iterations: list[int], workers: int = 1) -> Plan:  # fmt: skip
    """The run's (scale, tile) plan within ``cfg.max_memory`` (see :mod:`nstyle.plan`).

    The tile overlap comes from the deepest layer's effective receptive field, measured only
    when some scale has to be tiled (it costs one backward pass).
    """
    budget = check_budget(cfg.max_memory)
    model = MemoryModel.for_run(cfg, extractor, precision_name)
    plan = make_plan(shapes, iterations, model, budget, 0, cfg.style_scale, workers, cfg.tile)
    if not plan.tiled:
        return plan
    overlap = max(MIN_OVERLAP, -(-extractor.receptive_radius() // 16) * 16)
    return make_plan(shapes, iterations, model, budget, overlap, cfg.style_scale, workers, cfg.tile)


@dataclass
class _ScaleOutcome:
    """What one scale leaves for the next: its result (RGB uint8, and 16-bit when asked), losses, and why it ended."""

    pixels: np.ndarray
    high: np.ndarray | None
    history: list[dict[str, float]]
    best_loss: float
    best_iteration: int  # within this scale
    outcome: Outcome = COMPLETED
    worked: bool = True  # whether anything was optimised (an iteration, or a tile)


def _scale_images(cfg: Config, size: int, content: Image.Image,
                  styles: list[Image.Image]) -> tuple[Image.Image, list[Image.Image]]:  # fmt: skip
    """The content and style images at one scale, in luminance when colour is kept that way."""
    content_img = fit(content, size, "content image")
    style_imgs = [fit(s, round(size * cfg.style_scale), "style image") for s in styles]
    if cfg.preserve_color == "luminance":
        style_imgs = [color.matched_luminance(s, content_img) for s in style_imgs]
        content_img = color.grey(color.luminance(content_img))
    return content_img, style_imgs


class _WholeScales:
    """The loss and compiled optimiser that every untiled scale of a run shares.

    Each scale retargets the loss at its own images instead of building a new one, so
    L-BFGS's evaluation, compiled for images of any size, is compiled once: on the seed preset
    (ResNet50, 256 px, 2-core Zen 3) each later scale saved about a second of tracing and graph
    optimisation.
    """

    def __init__(self, cfg: Config, extractor: FeatureExtractor, precision_name: str):
        self.cfg, self.extractor, self.precision = cfg, extractor, precision_name
        self.compiled: tuple[StyleTransferLoss, Optimizer] | None = None  # made at the first whole scale

    def aim(self, content: Image.Image, styles: list[Image.Image]) -> Optimizer:
        """The optimiser, its loss aimed at this scale's content and style images."""
        if self.compiled is None:
            loss = objective(self.cfg, self.extractor, content, styles)
            prep = self.extractor.backbone.preprocessing
            self.compiled = loss, Optimizer(loss, prep.bounds(), settings_of(self.cfg, self.precision, self.cfg.iterations))
            return self.compiled[1]
        loss, optimizer = self.compiled
        loss.retarget(network_input(self.extractor, content), [network_input(self.extractor, s) for s in styles])
        return optimizer


def _whole_scale(cfg: Config, whole: _WholeScales, iterations: int, content: Image.Image, styles: list[Image.Image],
                 previous: np.ndarray | None, callbacks: list[Callback], history: list[dict[str, float]], stage: str,
                 checkpoint: CheckpointPlan | None, sources: dict[str, Any], scale: int,
                 state: OptimizerState | None, bits: int) -> _ScaleOutcome:  # fmt: skip
    """One scale optimised as a whole image, from the coarser ``previous`` result (RGB uint8) or the init."""
    prep = whole.extractor.backbone.preprocessing
    optimizer = whole.aim(content, styles)
    if previous is None:
        start_rgb = initial_image(cfg.init, content, styles[0], cfg.seed)
    else:  # warm start: the coarser result, upscaled
        start_rgb = np.asarray(Image.fromarray(previous).resize(content.size, Image.Resampling.LANCZOS), np.float32)
    scale_callbacks = list(callbacks)
    writer = None
    if checkpoint is not None:
        writer = CheckpointWriter(checkpoint, _checkpoint_maker(cfg, sources, whole.precision, scale, history, checkpoint))
        scale_callbacks.append(writer)
    run = optimizer.run(prep.forward(start_rgb)[None], prep.inverse,
                        [_offset(cb, len(history), cfg.total_iterations, stage) for cb in scale_callbacks],
                        resume=state, iterations=iterations)  # fmt: skip
    if writer is not None and run.state is not None and (history or run.history):  # a signal: keep the state
        writer.save(run.state)
    return _ScaleOutcome(prep.inverse(run.image[0]), prep.inverse(run.image[0], 16) if bits == 16 else None,
                         run.history, run.best_loss, run.best_iteration, run.outcome, bool(run.history))  # fmt: skip


def _tiled_scale(step: Step, cfg: Config, extractor: FeatureExtractor, precision_name: str, content: Image.Image,
                 styles: list[Image.Image], previous: np.ndarray | None, callbacks: list[Callback],
                 history: list[dict[str, float]], stage: str, workers: int, ray: str | None, bits: int,
                 resume: TileProgress | None, save: Callable[[TileProgress], None] | None) -> _ScaleOutcome:  # fmt: skip
    """One scale in tiles (:mod:`nstyle.tiles`), from the coarser result upscaled, or the init,
    or where a checkpoint of it left off (``resume``)."""
    if resume is not None:
        begin = None
    elif previous is None:
        begin = initial_image(cfg.init, content, styles[0], cfg.seed).astype(np.uint8)
    else:
        begin = np.asarray(Image.fromarray(previous).resize(content.size, Image.Resampling.LANCZOS))
    del previous  # only the upscaled start is needed now
    tiled = run_tiled(step, cfg, extractor, precision_name, content, styles, begin, callbacks, len(history),
                      cfg.total_iterations, stage, workers, ray, bits, resume, save)  # fmt: skip
    last = tiled.history[-1]["total"] if tiled.history else math.inf
    return _ScaleOutcome(tiled.pixels, tiled.high, tiled.history, last, len(tiled.history), tiled.outcome,
                         bool(tiled.history or tiled.tiles_finished))  # fmt: skip


def resume(
    checkpoint: str | os.PathLike, *, callbacks: Sequence[Callback] = (), progress: bool = False, every: int | None = None
) -> StylizeResult:
    """Continue the stopped run saved in ``checkpoint`` (a file a run with a checkpoint left).

    Its input files must be the ones it started with (checked by hash). It keeps checkpointing
    to the same file, every ``every`` iterations or else every 5 minutes, and deletes it when done.
    """
    saved = Checkpoint.load(checkpoint)
    content, styles = saved.check_sources()
    plan = CheckpointPlan(Path(checkpoint), every, None if every else 300.0, saved.output)
    return stylize(content, styles, callbacks=callbacks, progress=progress, checkpoint=plan, resume=saved)


def _tile_saver(plan: CheckpointPlan | None, cfg: Config, sources: dict[str, Any], precision_name: str, scale: int,
                earlier: list[dict[str, float]]) -> Callable[[TileProgress], None] | None:  # fmt: skip
    """How a tiled scale checkpoints: its canvas and finished tiles, when due and when stopped."""
    if plan is None:
        return None
    writer, earlier = CheckpointWriter(plan, lambda state: None), list(earlier)  # type: ignore[arg-type, return-value]

    def save(progress: TileProgress) -> None:
        if not (progress.final or writer.due()) or not (earlier or progress.history or progress.done):
            return  # not due, or stopped before any tile finished: nothing worth resuming
        empty = np.zeros(0, np.float32)
        state = OptimizerState(len(progress.history), progress.canvas[None], empty, math.inf, 0, empty, [], 1.0,
                               list(progress.history))  # fmt: skip
        tiles = {"pass": progress.pass_index, "done": list(progress.done)}
        Checkpoint(__version__, cfg.to_dict(), sources, precision_name, scale, earlier, state, plan.output, tiles).save(plan.path)
        writer.last = time.monotonic()

    return save


def _checkpoint_maker(cfg: Config, sources: dict[str, Any], precision_name: str, scale: int,
                      earlier: list[dict[str, float]], plan: CheckpointPlan) -> Callable[[OptimizerState], Checkpoint]:  # fmt: skip
    """How this scale's checkpoints are made from the optimiser's state."""
    earlier = list(earlier)
    return lambda state: Checkpoint(__version__, cfg.to_dict(), sources, precision_name, scale, earlier, state, plan.output)


def scale_sizes(cfg: Config) -> list[int]:
    """Longer sides, coarse to fine, ending at ``cfg.size``; each ``scale_factor`` times the last."""
    sizes = [round(cfg.size / cfg.scale_factor ** (cfg.scales - 1 - i)) for i in range(cfg.scales)]
    if sizes[0] < MIN_SIZE:
        raise ConfigError(
            f"scales: {cfg.scales} scales of factor {cfg.scale_factor:.3g} below size {cfg.size} start at "
            f"{sizes[0]} px, under the {MIN_SIZE} px minimum (fewer scales or a larger size)"
        )
    return sizes


def _offset(callback: Callback, done: int, total: int, stage: str = "") -> Callback:
    """``callback`` seeing iterations counted across all scales, and which scale it is in."""
    return lambda p: callback(dataclasses.replace(p, iteration=p.iteration + done, iterations=total, stage=stage.rstrip(", ")))


def initial_image(init: str, content: Image.Image, style: Image.Image, seed: int) -> np.ndarray:
    """The starting RGB pixels (float, 0..255) at the content image's size."""
    if init == "content":
        return np.asarray(content, np.float32)
    if init == "recolored":  # the photo in the painting's colours: its structure, and a head start on style
        return np.asarray(color.match_histogram(content, style), np.float32)
    if init == "style":
        return np.asarray(style.resize(content.size, Image.Resampling.LANCZOS), np.float32)
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (content.height, content.width, 3)).astype(np.float32)


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


def _configure(preset: str, config: Config | str | os.PathLike | None, options: dict[str, Any]) -> Config:
    if isinstance(config, Config):
        return Config.from_dict({**config.to_dict(), **{k: v for k, v in options.items() if v is not None}})
    return resolve(preset, config, options)


def _describe_source(source: ImageSource) -> dict[str, Any] | None:
    """Path and content hash of a file input (None for in-memory images), for reproduce."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        return {"path": str(path), "sha256": file_sha256(path)}
    return None
