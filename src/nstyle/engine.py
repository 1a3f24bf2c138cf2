"""The engine: a run's plan of steps (scale x tile x frame), each run on the one :class:`~nstyle.solver.Solver`.

:func:`nstyle.stylize` prepares a :class:`Run` (the validated config, the images, the feature
network, where progress and checkpoints go) and :meth:`Engine.plan` its
:class:`~nstyle.plan.Plan`; :meth:`Engine.run` does the optimisation: each step starts from the
coarser step's result upscaled (or the configured start image), optimises as a whole image or
tile by tile (:mod:`nstyle.tiles`), checkpoints as it goes, and reports one
:class:`~nstyle.outcome.Outcome`. A video frame (:class:`Frame`, :meth:`Engine.frame`) is one more
kind of step: it starts from the previous frame warped along the flow and holds to it through
the loss's temporal term (:mod:`nstyle.video`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from . import color
from ._version import __version__
from .backbones import FeatureExtractor
from .checkpoints import Checkpoint, CheckpointPlan, CheckpointWriter
from .config import Config
from .events import RunFinished, StepFinished
from .io import fit, fitted
from .optimize import Callback, OptimizeResult, OptimizerState
from .outcome import COMPLETED, Outcome, stopped
from .plan import MIN_OVERLAP, MemoryModel, Plan, Step, check_budget, make_plan
from .pool import emit
from .regions import Regions
from .solver import Solver
from .tiles import TileJob, TileProgress, run_tiled
from .wrap import calm_offsets, seamless

History = list[dict[str, float]]
#: px: a frame moving this far (RMS) from the warped previous frame costs its temporal weight x the previous frame's loss.
TEMPORAL_SCALE = 10.0


@dataclass
class Run:
    """Everything a run's steps share: what to optimise, with what, and who hears about it."""

    cfg: Config
    extractor: FeatureExtractor
    precision: str  # what cfg.precision resolved to here
    content: Image.Image  # the photo as loaded (the steps fit it to their size)
    styles: list[Image.Image]
    sources: dict[str, Any]  # the input files' paths and hashes, for the record and checkpoints
    callbacks: list[Callback] = field(default_factory=list)
    checkpoint: CheckpointPlan | None = None
    resume: Checkpoint | None = None
    workers: int = 1
    ray: str | None = None
    bits: int = 8
    regions: Regions | None = None  # where the style applies, at the photo's size (None: everywhere)

    wrap_offsets: tuple[int, int] | None = None  # a tileable run's roll (nstyle.wrap.seamless); None: chosen here

    def __post_init__(self) -> None:
        """A tileable run's photo (and its masks) made to wrap first: its content term holds the
        photo's edges, and a photo's edges do not meet (:func:`nstyle.wrap.seamless`)."""
        if self.cfg.tileable != "off":
            self.wrap_offsets = self.wrap_offsets or calm_offsets(np.asarray(self.content))
            self.content = Image.fromarray(wrapped(self.content, self.wrap_offsets))
            if self.regions is not None:
                self.regions = Regions(seamless(self.regions.masks, self.wrap_offsets), self.regions.blend)

    def regions_at(self, size: tuple[int, int]) -> Regions | None:
        """The run's regions at ``size`` (width, height), or None when it has none."""
        return None if self.regions is None else self.regions.resized(size)


@dataclass
class StepResult:
    """What one step leaves for the next: its result (RGB uint8, and 16-bit when asked), losses, and why it ended."""

    pixels: np.ndarray
    high: np.ndarray | None
    history: History
    best_loss: float
    best_iteration: int  # within this step
    outcome: Outcome = COMPLETED
    worked: bool = True  # whether anything was optimised (an iteration, or a tile)


@dataclass
class RunResult:
    """The last step's result with the whole run's losses and outcome."""

    pixels: np.ndarray | None
    high: np.ndarray | None
    history: History
    best_loss: float = math.inf
    best_iteration: int = 0  # counted over the whole run
    outcome: Outcome = COMPLETED
    worked: bool = False


@dataclass
class Frame:
    """A video frame as a step: its photo, where it starts, and the previous result it holds to.

    The temporal weight is relative: moving :data:`TEMPORAL_SCALE` px (RMS) from ``held`` costs
    ``weight`` times the previous frame's own loss, so one setting means the same for every
    backbone and preset (Ruder et al. use a fixed weight in their loss's units).
    """

    photo: np.ndarray  # the frame, RGB uint8
    iterations: int
    start: np.ndarray | None = None  # RGB float 0..255; None: the clip's first frame, from the run's start image
    held: np.ndarray | None = None  # the previous stylized frame warped onto this one (RGB float)
    mask: np.ndarray | None = None  # HxWx1, 1 where the flow is trusted
    weight: float = 0.0


class Engine:
    """Runs a plan's steps for one :class:`Run`; whole-image steps share one compiled solver, frames another.

    Each whole-image step aims that solver's loss at its own images instead of building a new
    one, so L-BFGS's evaluation, compiled for images of any size, is compiled once per run.
    """

    def __init__(self, run: Run):
        self.ctx = run
        self.solver: Solver | None = None  # made at the first whole step
        self.frames: Solver | None = None  # made at the first video frame
        self.frame_scale: float | None = None  # the loss a frame's temporal weight is relative to
        self._frame_styles: list[Image.Image] = []  # the style images at the frames' size

    def plan(self) -> Plan:
        """The run's (scale, tile) plan: its scales' sizes within ``cfg.max_memory`` (:mod:`nstyle.plan`)."""
        run = self.ctx
        sizes = [fitted(*run.content.size, s)[::-1] for s in run.cfg.scale_sizes]
        per_scale = list(run.cfg.scale_iterations) or [run.cfg.iterations] * run.cfg.scale_count
        return plan_run(run.cfg, run.extractor, run.precision, sizes, per_scale, run.workers)

    def run(self, plan: Plan) -> RunResult:
        """Every step of ``plan`` not finished before the checkpoint it resumes, until one halts the run."""
        run = self.ctx
        result = RunResult(
            None, None, list(run.resume.earlier_history) if run.resume else [], worked=run.resume is not None
        )
        for step in plan.steps:
            if run.resume is not None and step.scale - 1 < run.resume.scale:
                continue  # finished before the checkpoint: its result is in the saved image
            where = f"scale {step.scale} of {len(plan.steps)}" if len(plan.steps) > 1 else ""
            try:
                done = self.step(step, result.pixels, result.history)
            except KeyboardInterrupt as e:  # between two steps' optimisations: the coarser result stands
                if result.pixels is None:
                    raise
                result.outcome = stopped(e).at(where)
                break
            _add(result, done, where)
            emit(
                StepFinished("tiled" if step.tiled else "whole", where, len(done.history), done.best_loss, done.outcome)
            )
            if done.outcome.halts:
                break
        emit(RunFinished(result.outcome, len(result.history), result.best_loss))
        return result

    def step(self, step: Step, previous: np.ndarray | None, history: History) -> StepResult:
        """One step, whole or tiled, from the coarser ``previous`` result (RGB uint8) or the run's start."""
        run = self.ctx
        content, styles = step_images(run.cfg, max(step.height, step.width), run.content, run.styles)
        count = run.cfg.scale_count
        stage = f"scale {step.scale}/{count}, " if count > 1 else ""
        state = run.resume.state if run.resume is not None and run.resume.scale == step.scale - 1 else None
        if step.tiled:
            return self._tiled(step, content, styles, previous, history, stage, state)
        return self._whole(step, content, styles, previous, history, stage, state)

    def _solver(self, content: Image.Image, styles: list[Image.Image]) -> Solver:
        """The run's whole-image solver, aimed at this step's content, style images and regions."""
        run = self.ctx
        regions = run.regions_at(content.size)
        if self.solver is None:
            self.solver = Solver(run.cfg, run.extractor, run.precision, content, styles, regions=regions)
        else:
            self.solver.aim(content, styles, regions)
        return self.solver

    def _whole(
        self,
        step: Step,
        content: Image.Image,
        styles: list[Image.Image],
        previous: np.ndarray | None,
        history: History,
        stage: str,
        state: OptimizerState | None,
    ) -> StepResult:
        run = self.ctx
        solver = self._solver(content, styles)
        start = start_pixels(run.cfg, content, styles[0], previous, run.regions_at(content.size))
        callbacks = [emit, *run.callbacks]  # the bars and the UI hear first: a callback's Stop ends the iteration
        writer = None
        if run.checkpoint is not None:
            writer = CheckpointWriter(run.checkpoint, self._checkpoint_maker(step.scale - 1, history))
            callbacks.append(writer)
        counted = [_offset(cb, len(history), run.cfg.total_iterations, stage) for cb in callbacks]
        done = solver.solve(solver.start(start), step.iterations, counted, state)
        if writer is not None and done.state is not None and (history or done.history):  # a signal: keep the state
            writer.save(done.state)
        return self._step_result(done)

    def _step_result(self, done: OptimizeResult) -> StepResult:
        prep = self.ctx.extractor.backbone.preprocessing
        high = prep.inverse(done.image[0], 16) if self.ctx.bits == 16 else None
        return StepResult(
            prep.inverse(done.image[0]),
            high,
            done.history,
            done.best_loss,
            done.best_iteration,
            done.outcome,
            bool(done.history),
        )

    def frame(self, frame: Frame) -> StepResult:
        """A video frame on the clip's one compiled solver (every frame of a chunk shares its size).

        The first frame (no ``held``) starts from the run's start image with no temporal term;
        later ones from ``frame.start`` holding to ``frame.held``. Pixels come back as RGB uint8,
        with the frame's own colour when only luminance was styled.
        """
        run = self.ctx
        if run.cfg.tileable != "off":
            frame = dataclasses.replace(frame, photo=wrapped(frame.photo, run.wrap_offsets))
        solver = self._frame_solver(frame.photo.shape[:2])
        photo = working(run.cfg, frame.photo)
        regions = run.regions_at((frame.photo.shape[1], frame.photo.shape[0]))
        solver.aim(photo, regions=regions)
        if frame.held is None:
            content = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8))
            solver.hold(None)
            start = solver.start(start_pixels(run.cfg, content, self._frame_styles[0], None, regions))
            done = solver.solve(start, frame.iterations, [emit, *run.callbacks])
            self.frame_scale = max(done.best_loss, 1e-30)
        else:
            assert frame.start is not None
            start = solver.start(working(run.cfg, frame.start))
            if self.frame_scale is None:  # the chunk's first later frame: its starting loss (later ones reuse the last)
                solver.hold(None)
                self.frame_scale = solver.loss_at(start)
            solver.hold(working(run.cfg, frame.held), frame.mask, frame.weight * self.frame_scale / TEMPORAL_SCALE**2)
            done = solver.solve(start, frame.iterations, [emit, *run.callbacks])
            if done.history:  # this frame's own loss, without the temporal term: the next frame's scale
                last, weight = done.history[-1], solver.loss.temporal_weight
                self.frame_scale = max(last["total"] - weight * last["temporal"], 1e-30)
        result = self._step_result(done)
        result.pixels = restore_colour(run.cfg, result.pixels, frame.photo)
        if regions is not None:
            result.pixels = regions.keep_photo(result.pixels, frame.photo)
        emit(StepFinished("frame", "", len(done.history), done.best_loss, done.outcome))
        return result

    def _frame_solver(self, shape: tuple[int, int]) -> Solver:
        """The clip's solver with the temporal term, its style images fitted to the frames' size."""
        run = self.ctx
        if self.frames is None:
            _, self._frame_styles = step_images(run.cfg, max(shape), run.content, run.styles)
            blank = np.zeros((*shape, 3), np.uint8)
            self.frames = Solver(
                run.cfg,
                run.extractor,
                run.precision,
                blank,
                self._frame_styles,
                temporal=True,
                masked=run.regions is not None,
            )
        return self.frames

    def _tiled(
        self,
        step: Step,
        content: Image.Image,
        styles: list[Image.Image],
        previous: np.ndarray | None,
        history: History,
        stage: str,
        state: OptimizerState | None,
    ) -> StepResult:
        run = self.ctx
        resume = run.resume
        so_far = None
        if state is not None and resume is not None and resume.tiles:
            so_far = TileProgress(state.image[0], resume.tiles["pass"], resume.tiles["done"], state.history)
        regions = run.regions_at(content.size)
        begin = None
        if so_far is None:
            begin = start_pixels(run.cfg, content, styles[0], previous, regions).astype(np.uint8)
        job = TileJob(
            step, run.cfg, run.extractor, run.precision, content, styles, run.workers, run.ray, run.bits, regions
        )
        tiled = run_tiled(
            job,
            begin,
            run.callbacks,
            (len(history), run.cfg.total_iterations, stage),
            so_far,
            self._tile_saver(step.scale - 1, history),
        )
        last = tiled.history[-1]["total"] if tiled.history else math.inf
        return StepResult(
            tiled.pixels,
            tiled.high,
            tiled.history,
            last,
            len(tiled.history),
            tiled.outcome,
            bool(tiled.history or tiled.tiles_finished),
        )

    def _checkpoint_maker(self, scale: int, earlier: History) -> Callable[[OptimizerState], Checkpoint]:
        """How a whole step's checkpoints are made from the optimiser's state."""
        run, earlier = self.ctx, list(earlier)
        plan = run.checkpoint
        assert plan is not None
        return lambda state: Checkpoint(
            __version__, run.cfg.to_dict(), run.sources, run.precision, scale, earlier, state, plan.output
        )

    def _tile_saver(self, scale: int, earlier: History) -> Callable[[TileProgress], None] | None:
        """How a tiled step checkpoints: its canvas and finished tiles, when due and when stopped."""
        run, earlier = self.ctx, list(earlier)
        plan = run.checkpoint
        if plan is None:
            return None
        writer = CheckpointWriter(plan, lambda state: None)  # type: ignore[arg-type, return-value]

        def save(progress: TileProgress) -> None:
            if not (progress.final or writer.due()) or not (earlier or progress.history or progress.done):
                return  # not due, or stopped before any tile finished: nothing worth resuming
            empty = np.zeros(0, np.float32)
            state = OptimizerState(
                len(progress.history), progress.canvas[None], empty, math.inf, 0, empty, [], 1.0, list(progress.history)
            )
            tiles = {"pass": progress.pass_index, "done": list(progress.done)}
            Checkpoint(
                __version__, run.cfg.to_dict(), run.sources, run.precision, scale, earlier, state, plan.output, tiles
            ).save(plan.path)
            writer.last = time.monotonic()

        return save


def _add(result: RunResult, done: StepResult, where: str) -> None:
    """A finished step into the run's result: its image, its losses, and its outcome if it is the first early one."""
    if done.history:  # else the previous step's best stands
        result.best_iteration, result.best_loss = len(result.history) + done.best_iteration, done.best_loss
    result.history += done.history
    result.worked = result.worked or done.worked
    result.pixels, result.high = done.pixels, done.high
    if not result.outcome.early:
        result.outcome = done.outcome.at(where)


def step_images(
    cfg: Config, size: int, content: Image.Image, styles: list[Image.Image]
) -> tuple[Image.Image, list[Image.Image]]:
    """The content and style images at one step's size, in luminance when colour is kept that way."""
    content_img = fit(content, size, "content image")
    style_imgs = [fit(s, round(size * cfg.style_scale), "style image") for s in styles]
    if cfg.preserve_color == "luminance":
        style_imgs = [color.matched_luminance(s, content_img) for s in style_imgs]
        content_img = color.grey(color.luminance(content_img))
    return content_img, style_imgs


def start_pixels(
    cfg: Config,
    content: Image.Image,
    style: Image.Image,
    previous: np.ndarray | None,
    regions: Regions | None = None,
) -> np.ndarray:
    """A step's start (RGB float, 0..255): the coarser step's result upscaled, or the configured
    start image; with ``regions``, the photo where no style applies."""
    if previous is None:
        start = initial_image(cfg.init, content, style, cfg.seed)
    else:
        start = np.asarray(Image.fromarray(previous).resize(content.size, Image.Resampling.LANCZOS), np.float32)
    return start if regions is None else regions.blend_start(start, np.asarray(content))


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


def wrapped(photo: Image.Image | np.ndarray, offsets: tuple[int, int] | None) -> np.ndarray:
    """``photo`` (RGB) made to wrap, as RGB uint8."""
    return np.clip(np.rint(seamless(np.asarray(photo), offsets)), 0, 255).astype(np.uint8)


def working(cfg: Config, rgb: np.ndarray) -> np.ndarray:
    """What a frame's loss sees (RGB float): the frame itself, or its luminance when colour is kept that way."""
    if cfg.preserve_color != "luminance":
        return rgb.astype(np.float32)
    image = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return np.asarray(color.grey(color.luminance(image)), np.float32)


def restore_colour(cfg: Config, pixels: np.ndarray, photo: np.ndarray | Image.Image) -> np.ndarray:
    """The result (RGB uint8) with the photo's colour back when only luminance was styled."""
    if cfg.preserve_color != "luminance":
        return pixels
    picture = photo if isinstance(photo, Image.Image) else Image.fromarray(photo)
    return np.asarray(color.restore_chroma(Image.fromarray(pixels), picture))


def final_image(run: Run, done: RunResult) -> tuple[Image.Image, np.ndarray | None]:
    """The last step's pixels as the result, with the photo's colours back when only luminance
    was styled, and the photo itself where no style applies (a masked run)."""
    pixels, high = restore_colour(run.cfg, done.pixels, run.content), done.high  # type: ignore[arg-type]
    if run.cfg.preserve_color == "luminance" and high is not None:
        rgb = color.restore_chroma_array(high.astype(np.float64) * (255 / 65535), run.content)
        high = np.clip(np.rint(rgb * (65535 / 255)), 0, 65535).astype(np.uint16)
    if run.regions is not None:
        size = (pixels.shape[1], pixels.shape[0])
        photo = np.asarray(
            run.content if run.content.size == size else run.content.resize(size, Image.Resampling.LANCZOS)
        )
        pixels = run.regions.keep_photo(pixels, photo)
        high = None if high is None else run.regions.keep_photo(high, photo)
    return Image.fromarray(pixels), high


def plan_run(
    cfg: Config,
    extractor: FeatureExtractor,
    precision_name: str,
    shapes: list[tuple[int, int]],
    iterations: list[int],
    workers: int = 1,
) -> Plan:
    """The run's (scale, tile) plan within ``cfg.max_memory`` (see :mod:`nstyle.plan`).

    The tile overlap comes from the deepest layer's effective receptive field, measured only
    when some scale has to be tiled (it costs one backward pass).
    A tileable run's tiled scales get grids that wrap round the picture's edges.
    """
    budget = check_budget(cfg.max_memory)
    model = MemoryModel.for_run(cfg, extractor, precision_name)
    plan = make_plan(shapes, iterations, model, budget, 0, cfg.style_scale, workers, cfg.tile)
    if not plan.tiled:
        return plan
    overlap = max(MIN_OVERLAP, -(-extractor.receptive_radius() // 16) * 16)
    plan = make_plan(shapes, iterations, model, budget, overlap, cfg.style_scale, workers, cfg.tile)
    if cfg.tileable == "off":
        return plan
    return dataclasses.replace(plan, steps=[dataclasses.replace(s, wrap=s.tiled) for s in plan.steps])


def _offset(callback: Callback, done: int, total: int, stage: str = "") -> Callback:
    """``callback`` seeing iterations counted across all steps, and which scale it is in."""
    return lambda p: callback(
        dataclasses.replace(p, iteration=p.iteration + done, iterations=total, stage=stage.rstrip(", "))
    )
