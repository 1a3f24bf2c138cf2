"""The engine: a run's plan of steps (one per scale, each whole or in tiles), executed in order.

:func:`nstyle.stylize` prepares a :class:`Run` (the validated config, the images, the feature
network, where progress and checkpoints go) and a :class:`~nstyle.plan.Plan`, and
:meth:`Engine.run` does the optimisation: each step starts from the coarser step's result
upscaled (or the configured start image), optimises as a whole image or tile by tile
(:mod:`nstyle.tiles`), checkpoints as it goes, and reports one :class:`~nstyle.outcome.Outcome`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from . import color
from ._version import __version__
from .backbones import FeatureExtractor
from .checkpoints import Checkpoint, CheckpointPlan, CheckpointWriter
from .config import Config
from .io import fit
from .losses import StyleTransferLoss, network_input, objective
from .optimize import Callback, Optimizer, OptimizerState
from .outcome import COMPLETED, Outcome, stopped
from .plan import Plan, Step
from .tiles import TileJob, TileProgress, run_tiled, settings_of

History = list[dict[str, float]]


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


class Engine:
    """Runs a plan's steps for one :class:`Run`; whole-image steps share one compiled optimiser.

    Each whole-image step retargets that optimiser's loss at its own images instead of building
    a new one, so L-BFGS's evaluation, compiled for images of any size, is compiled once per run.
    """

    def __init__(self, run: Run):
        self.ctx = run
        self.compiled: tuple[StyleTransferLoss, Optimizer] | None = None  # made at the first whole step

    def run(self, plan: Plan) -> RunResult:
        """Every step of ``plan`` not finished before the checkpoint it resumes, until one halts the run."""
        run = self.ctx
        result = RunResult(None, None, list(run.resume.earlier_history) if run.resume else [], worked=run.resume is not None)
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
            if done.outcome.halts:
                break
        return result

    def step(self, step: Step, previous: np.ndarray | None, history: History) -> StepResult:
        """One step, whole or tiled, from the coarser ``previous`` result (RGB uint8) or the run's start."""
        run = self.ctx
        content, styles = step_images(run.cfg, max(step.height, step.width), run.content, run.styles)
        stage = f"scale {step.scale}/{run.cfg.scales}, " if run.cfg.scales > 1 else ""
        state = run.resume.state if run.resume is not None and run.resume.scale == step.scale - 1 else None
        if step.tiled:
            return self._tiled(step, content, styles, previous, history, stage, state)
        return self._whole(step, content, styles, previous, history, stage, state)

    def _optimizer(self, content: Image.Image, styles: list[Image.Image]) -> Optimizer:
        """The run's whole-image optimiser, its loss aimed at this step's content and style images."""
        run = self.ctx
        if self.compiled is None:
            loss = objective(run.cfg, run.extractor, content, styles)
            prep = run.extractor.backbone.preprocessing
            self.compiled = loss, Optimizer(loss, prep.bounds(), settings_of(run.cfg, run.precision, run.cfg.iterations))
            return self.compiled[1]
        loss, optimizer = self.compiled
        loss.retarget(network_input(run.extractor, content), [network_input(run.extractor, s) for s in styles])
        return optimizer

    def _whole(self, step: Step, content: Image.Image, styles: list[Image.Image], previous: np.ndarray | None,
               history: History, stage: str, state: OptimizerState | None) -> StepResult:  # fmt: skip
        run = self.ctx
        prep = run.extractor.backbone.preprocessing
        optimizer = self._optimizer(content, styles)
        start = start_pixels(run.cfg, content, styles[0], previous)
        callbacks = list(run.callbacks)
        writer = None
        if run.checkpoint is not None:
            writer = CheckpointWriter(run.checkpoint, self._checkpoint_maker(step.scale - 1, history))
            callbacks.append(writer)
        counted = [_offset(cb, len(history), run.cfg.total_iterations, stage) for cb in callbacks]
        done = optimizer.run(prep.forward(start)[None], prep.inverse, counted, resume=state, iterations=step.iterations)
        if writer is not None and done.state is not None and (history or done.history):  # a signal: keep the state
            writer.save(done.state)
        high = prep.inverse(done.image[0], 16) if run.bits == 16 else None
        return StepResult(prep.inverse(done.image[0]), high, done.history, done.best_loss, done.best_iteration,
                          done.outcome, bool(done.history))  # fmt: skip

    def _tiled(self, step: Step, content: Image.Image, styles: list[Image.Image], previous: np.ndarray | None,
               history: History, stage: str, state: OptimizerState | None) -> StepResult:  # fmt: skip
        run = self.ctx
        resume = run.resume
        so_far = None
        if state is not None and resume is not None and resume.tiles:
            so_far = TileProgress(state.image[0], resume.tiles["pass"], resume.tiles["done"], state.history)
        begin = None if so_far is not None else start_pixels(run.cfg, content, styles[0], previous).astype(np.uint8)
        job = TileJob(step, run.cfg, run.extractor, run.precision, content, styles, run.workers, run.ray, run.bits)
        tiled = run_tiled(job, begin, run.callbacks, (len(history), run.cfg.total_iterations, stage), so_far,
                          self._tile_saver(step.scale - 1, history))  # fmt: skip
        last = tiled.history[-1]["total"] if tiled.history else math.inf
        return StepResult(tiled.pixels, tiled.high, tiled.history, last, len(tiled.history), tiled.outcome,
                          bool(tiled.history or tiled.tiles_finished))  # fmt: skip

    def _checkpoint_maker(self, scale: int, earlier: History) -> Callable[[OptimizerState], Checkpoint]:
        """How a whole step's checkpoints are made from the optimiser's state."""
        run, earlier = self.ctx, list(earlier)
        plan = run.checkpoint
        assert plan is not None
        return lambda state: Checkpoint(__version__, run.cfg.to_dict(), run.sources, run.precision, scale, earlier,
                                        state, plan.output)  # fmt: skip

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
            state = OptimizerState(len(progress.history), progress.canvas[None], empty, math.inf, 0, empty, [], 1.0,
                                   list(progress.history))  # fmt: skip
            tiles = {"pass": progress.pass_index, "done": list(progress.done)}
            Checkpoint(__version__, run.cfg.to_dict(), run.sources, run.precision, scale, earlier, state, plan.output,
                       tiles).save(plan.path)  # fmt: skip
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


def step_images(cfg: Config, size: int, content: Image.Image,
                styles: list[Image.Image]) -> tuple[Image.Image, list[Image.Image]]:  # fmt: skip
    """The content and style images at one step's size, in luminance when colour is kept that way."""
    content_img = fit(content, size, "content image")
    style_imgs = [fit(s, round(size * cfg.style_scale), "style image") for s in styles]
    if cfg.preserve_color == "luminance":
        style_imgs = [color.matched_luminance(s, content_img) for s in style_imgs]
        content_img = color.grey(color.luminance(content_img))
    return content_img, style_imgs


def start_pixels(cfg: Config, content: Image.Image, style: Image.Image, previous: np.ndarray | None) -> np.ndarray:
    """A step's start (RGB float, 0..255): the coarser step's result upscaled, or the configured start image."""
    if previous is None:
        return initial_image(cfg.init, content, style, cfg.seed)
    return np.asarray(Image.fromarray(previous).resize(content.size, Image.Resampling.LANCZOS), np.float32)


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


def _offset(callback: Callback, done: int, total: int, stage: str = "") -> Callback:
    """``callback`` seeing iterations counted across all steps, and which scale it is in."""
    return lambda p: callback(dataclasses.replace(p, iteration=p.iteration + done, iterations=total, stage=stage.rstrip(", ")))
