"""A tiled scale: the image optimised tile by tile, and blended back so it reads as one painting.

How it stays one painting (see :mod:`nstyle.plan` for the sizes):

- the scale starts from the previous, whole-image scale's result, upscaled: the composition is
  already there, tiles only refine it;
- every tile aims at the same style: the statistics of the whole style image at this scale,
  computed once (tile by tile when it is large, :func:`~nstyle.losses.style_targets`); only the
  content target is the tile's own;
- each optimised tile is feathered into the image with a window that falls to 0 across the
  overlap, and the tiles are averaged by their windows (:func:`~nstyle.plan.feather`), so a
  tile's edge, where the network saw padding, weighs nothing, at corners too;
- the second pass shifts the grid (half a step; round a torus, clear of the first pass's tile
  edges, :func:`~nstyle.plan.shift_offset`), so its seams fall inside the first pass's tiles;
- a ``tileable`` scale's grid wraps round the picture's edges (:meth:`~nstyle.plan.Step.tiles`):
  the tiles that cross an edge take their pixels from both sides, so the wrap is one more
  feathered seam between tiles.

Tiles of one group (:func:`~nstyle.plan.colour`) never overlap, so they can be optimised at
once: in this process one after another, in ``workers`` local processes, or as Ray tasks.
Each worker keeps one compiled step per tile size and swaps only the tile's content.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .backbones import FeatureExtractor, Preprocessing
from .config import Config
from .losses import Targets, backend, statistic_of, style_targets, tensor
from .optimize import Callback, Progress, notify
from .outcome import COMPLETED, Ending, Outcome, Stop, stopped
from .plan import Step, Tile, blend, feather
from .pool import TaskPool, emit, sender
from .regions import Regions
from .signals import Interrupted, check
from .solver import Solver, build_extractor

BAND_ROWS = 256  # rows converted at a time between 8-bit RGB and network space: no whole-image temporaries


@dataclass
class TiledResult:
    """The assembled image of a tiled scale (RGB uint8) and how its passes went."""

    pixels: np.ndarray
    high: np.ndarray | None = None  # the same in 16 bits, when asked for
    history: list[dict[str, float]] = field(default_factory=list)
    outcome: Outcome = COMPLETED
    tiles_finished: int = 0  # in this run of the scale (a resumed one counts only its own)


@dataclass
class TileProgress:
    """Where a tiled scale stands: the canvas (network space), the pass, its finished tiles."""

    canvas: np.ndarray
    pass_index: int
    done: list[int]  # indices into the pass's tiles
    history: list[dict[str, float]]
    final: bool = False  # saved because the run stopped (not because a checkpoint was due)


@dataclass(frozen=True)
class TileTask:
    """One tile's work, as plain data: it pickles to a worker process or a Ray task."""

    key: tuple[Any, ...]  # (run, scale): a worker rebuilds its loss only when this changes
    config: dict[str, Any]
    precision: str
    targets: Targets
    content: np.ndarray  # the tile of the content image, RGB uint8
    start: np.ndarray  # the tile of the current image, network space
    iterations: int
    regions: Regions | None = None  # the tile's part of the regions, in a masked run


_worker: dict[str, Any] = {}  # this process's Solver for tiles, and the key and shape it was built for
_worker_lock = threading.Lock()


def optimize_tile(task: TileTask) -> tuple[np.ndarray, list[dict[str, float]], Outcome]:
    """Run one tile in whichever process this is; returns (tile in network space, history, outcome)."""
    with _worker_lock:
        shape = task.content.shape[:2]
        if _worker.get("key") != (task.key, shape):
            _worker.clear()  # the previous scale's solver: free it before building the next
            cfg = Config.from_dict(task.config)
            extractor = build_extractor(cfg, task.precision)
            solver = tile_solver(cfg, extractor, task.precision, task.targets, shape, task.regions is not None)
            _worker.update(key=(task.key, shape), solver=solver)
        return _solve_tile(_worker["solver"], task, emit)


def tile_solver(
    cfg: Config,
    extractor: FeatureExtractor,
    precision: str,
    targets: Targets,
    shape: tuple[int, int],
    masked: bool = False,
) -> Solver:
    """One compiled solver for tiles of ``shape``, every tile aiming at the scale's shared style
    ``targets`` (and, ``masked``, at its own part of the regions)."""
    # A tile is not a picture that repeats: a tileable scale wraps by laying its grid round the picture (Step.tiles).
    cfg = dataclasses.replace(cfg, tileable="off")
    return Solver(cfg, extractor, precision, np.zeros((*shape, 3), np.uint8), targets=targets, masked=masked)


def _solve_tile(solver: Solver, task: TileTask, hear: Callback) -> tuple[np.ndarray, list[dict[str, float]], Outcome]:
    """One tile on ``solver``; ``hear`` gets its iterations (in a worker: sent to the parent's pool)."""
    solver.aim(task.content, regions=task.regions)
    result = solver.solve(task.start, task.iterations, [hear])
    return result.image[0], result.history, result.outcome


def shared_style_targets(cfg: Config, extractor: FeatureExtractor, styles: Sequence[Image.Image], tile: int) -> Targets:
    """Each style image's statistics at this scale, whole-image, computed ``tile`` px at a time."""
    prep = extractor.backbone.preprocessing
    layers = [extractor.resolved[s.name] for s in cfg.style_layers]
    out = []
    for style in styles:
        x = tensor(to_network(np.asarray(style), prep)[None])
        statistic = statistic_of(cfg.style_loss, cfg.histogram_weight)
        out.append(style_targets(extractor, x, layers, statistic, cfg.swag, tile=tile))
        del x
    return [{name: tuple(backend.to_numpy(t) for t in target) for name, target in d.items()} for d in out]


def to_network(rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """``prep.forward`` of a whole image, a band of rows at a time (no whole-image float temporaries)."""
    out = np.empty(rgb.shape, np.float32)
    for row in range(0, rgb.shape[0], BAND_ROWS):
        out[row : row + BAND_ROWS] = prep.forward(rgb[row : row + BAND_ROWS])
    return out


def to_rgb(canvas: np.ndarray, prep: Preprocessing, bits: int = 8) -> np.ndarray:
    """``prep.inverse`` of a whole image (8 or 16 bits), a band of rows at a time."""
    out = np.empty(canvas.shape, np.uint16 if bits == 16 else np.uint8)
    for row in range(0, canvas.shape[0], BAND_ROWS):
        out[row : row + BAND_ROWS] = prep.inverse(canvas[row : row + BAND_ROWS], bits)
    return out


@dataclass(frozen=True)
class TileJob:
    """A tiled scale's fixed part: the step, what it optimises, with what, and where."""

    step: Step
    cfg: Config
    extractor: FeatureExtractor
    precision: str
    content: Image.Image  # the photo at the step's size
    styles: Sequence[Image.Image]
    workers: int = 1
    ray: str | None = None
    bits: int = 8
    regions: Regions | None = None  # at the step's size, in a masked run


def run_tiled(
    job: TileJob,
    start: np.ndarray | None,
    callbacks: Sequence[Callback] = (),
    place: tuple[int, int, str] = (0, 0, ""),
    resume: TileProgress | None = None,
    save: Callable[[TileProgress], None] | None = None,
) -> TiledResult:
    """Optimise ``job``'s scale tile by tile from ``start`` (RGB uint8 at the scale's size).

    ``callbacks`` hear after every tile, with the assembled image; ``place`` is (iterations
    before this scale, the run's total, the stage label) in the whole run's count. Ctrl-C,
    SIGTERM or a callback's Stop end it after the tile in progress, with every finished tile in
    the image. ``save`` gets the progress after each tile (a checkpoint writer decides whether
    it is due) and when stopped; ``resume`` continues such a progress (``start`` is then unused).
    """
    return _TiledScale(job, callbacks, place, save).run(start, resume)


class _TiledScale:
    """One run of :func:`run_tiled`: the canvas, the progress so far, and how each finished tile lands."""

    def __init__(
        self,
        job: TileJob,
        callbacks: Sequence[Callback],
        place: tuple[int, int, str],
        save: Callable[[TileProgress], None] | None,
    ):
        assert job.step.tile is not None
        self.job, self.callbacks, self.save = job, callbacks, save
        self.done, self.total, self.stage = place
        self.prep = job.extractor.backbone.preprocessing
        self.targets = shared_style_targets(job.cfg, job.extractor, job.styles, max(256, -(-job.step.tile // 32) * 32))
        self.pixels = np.asarray(job.content)
        self.solver: Solver | None = None  # in this process: one compiled solver for the tiles
        self.position = float(self.done)  # iterations done, a finished tile counting its share of its pass
        self.heard = 0  # iterations heard from tiles under way (their share moves the bar before they finish)
        self.outer = sender()  # the run's subscribers, wherever the tiles' events arrive
        self.place: tuple[int, int, str] = (0, 1, "")  # iteration count, tiles in the pass, and the stage label

    def run(self, start: np.ndarray | None, resume: TileProgress | None) -> TiledResult:
        job, step = self.job, self.job.step
        self.canvas = resume.canvas if resume is not None else to_network(start, self.prep)  # type: ignore[arg-type]
        del start
        self.result = TiledResult(pixels=np.empty(0, np.uint8), history=list(resume.history) if resume else [])
        self.progress = TileProgress(self.canvas, 0, [], self.result.history)
        self.key = (os.getpid(), id(self.canvas), step.scale)
        try:
            with TaskPool(job.workers, job.ray, on_event=self._heard) as pool:
                for pass_index, iterations in enumerate(step.passes):
                    if resume is not None and pass_index < resume.pass_index:
                        continue
                    kept = set(resume.done) if resume is not None and pass_index == resume.pass_index else set()
                    self._pass(pool, pass_index, iterations, kept)
        except KeyboardInterrupt as e:
            self.result.outcome = stopped(e).at(_place(step, self.progress))
            if self.save is not None:
                self.save(dataclasses.replace(self.progress, final=True))
        except Stop as e:
            self.result.outcome = stopped(e).at(_place(step, self.progress))
        self.result.pixels = to_rgb(self.canvas, self.prep)
        if job.bits == 16:
            self.result.high = to_rgb(self.canvas, self.prep, 16)
        return self.result

    def _pass(self, pool: TaskPool, pass_index: int, iterations: int, kept: set[int]) -> None:
        """One pass over the grid, group by group (a group's tiles never overlap), skipping ``kept`` tiles."""
        tiles = self.job.step.tiles(pass_index)
        self.progress.pass_index, self.progress.done = pass_index, sorted(kept)
        self._locate(tiles, pass_index, iterations)
        losses: list[list[dict[str, float]]] = []
        areas: list[int] = []
        for group in sorted({t.group for t in tiles}):
            members = [t for t in tiles if t.group == group and tiles.index(t) not in kept]
            if not members:
                continue
            for tile, (tile_pixels, history, outcome) in self._optimise(pool, members, iterations):
                check()
                if outcome.ending is Ending.SIGNAL:  # stopped half-way: not kept, a resume runs it again
                    raise Interrupted(outcome.signum or signal.SIGINT)
                blend(self.canvas, tile_pixels, tile, feather(tile, tiles, self.job.step.overlap, self.job.step.torus))
                self.progress.done.append(tiles.index(tile))
                losses.append(history)
                areas.append(tile.height * tile.width)
                self._tile_finished(tiles, pass_index, iterations, history)
        self.result.history += _mean_history(losses, areas, iterations)
        self.progress.history = self.result.history

    def _task(self, where: Any, iterations: int) -> TileTask:
        """The tile at ``where`` (its box, or index arrays round the edges) as plain data for a worker."""
        job = self.job
        regions = None if job.regions is None else job.regions.crop(where)
        cfg = job.cfg.task_dict()
        return TileTask(
            self.key,
            cfg,
            job.precision,
            self.targets,
            self.pixels[where],
            self.canvas[where].copy(),
            iterations,
            regions,
        )

    def _optimise(self, pool: TaskPool, members: list[Tile], iterations: int):  # type: ignore[no-untyped-def]
        """``(tile, (pixels, history, outcome))`` for each of ``members``, as each finishes."""
        job = self.job
        tasks = [self._task(t.index(self.canvas.shape), iterations) for t in members]
        if job.workers == 1 and job.ray is None:  # here; else the pool's workers, each on its share of the threads
            if self.solver is None:
                shape = (members[0].height, members[0].width)
                masked = job.regions is not None
                self.solver = tile_solver(job.cfg, job.extractor, job.precision, self.targets, shape, masked)
            return ((members[i], _solve_tile(self.solver, task, self._heard)) for i, task in enumerate(tasks))
        return ((members[i], outcome) for i, outcome in pool.map_unordered(optimize_tile, tasks))

    def _locate(self, tiles: list[Tile], pass_index: int, iterations: int) -> None:
        """Where the run's count and stage stand now, in this pass."""
        step, finished = self.job.step, len(self.progress.done)
        passes = f", pass {pass_index + 1}/{len(step.passes)}" if len(step.passes) > 1 else ""
        iteration = self.done + sum(step.passes[:pass_index]) + (iterations if finished == len(tiles) else 0)
        self.place = (iteration, len(tiles), f"{self.stage}tile {finished}/{len(tiles)}{passes}")

    def _heard(self, event: object) -> None:
        """A tile's iteration (here, or from a worker): the run's subscribers hear the count move by its share."""
        if not isinstance(event, Progress):
            self.outer(event)
            return
        self.heard += 1
        iteration, count, stage = self.place
        canvas, prep = self.canvas, self.prep
        self.outer(
            Progress(
                iteration,
                self.total,
                event.losses,
                lambda: to_rgb(canvas, prep),
                None,
                self.position + self.heard / count,
                stage,
            )
        )

    def _tile_finished(
        self, tiles: list[Tile], pass_index: int, iterations: int, history: list[dict[str, float]]
    ) -> None:
        """Tell the callbacks and subscribers (the assembled image, the count moved by a tile's share) and offer a checkpoint."""
        self.result.tiles_finished += 1
        self.position += iterations / len(tiles)
        self.heard = max(0, self.heard - iterations)
        self._locate(tiles, pass_index, iterations)
        iteration, _, stage = self.place
        canvas, prep = self.canvas, self.prep
        progress = Progress(
            iteration,
            self.total,
            history[-1] if history else {},
            lambda: to_rgb(canvas, prep),
            None,
            self.position + self.heard / len(tiles),
            stage,
        )
        self.outer(progress)
        notify(self.callbacks, progress)
        if self.save is not None:
            self.save(self.progress)


def _place(step: Step, progress: TileProgress) -> str:
    """Where a stopped tiled scale was: "pass 1 of 2, 3 of 8 tiles done"."""
    passes = f"pass {progress.pass_index + 1} of {len(step.passes)}, " if len(step.passes) > 1 else ""
    return f"{passes}{len(progress.done)} of {len(step.tiles(progress.pass_index))} tiles done"


def _mean_history(losses: list[list[dict[str, float]]], areas: list[int], iterations: int) -> list[dict[str, float]]:
    """Per iteration of a pass, each loss term averaged over the tiles by area."""
    out = []
    for i in range(iterations):
        rows = [(h[min(i, len(h) - 1)], a) for h, a in zip(losses, areas) if h]
        if not rows:
            break
        weight = sum(a for _, a in rows)
        out.append({k: sum(r[k] * a for r, a in rows) / weight for k in rows[0][0]})
    return out
