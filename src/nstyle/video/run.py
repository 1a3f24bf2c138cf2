"""The frame loop of Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos" (GCPR 2016).

Per-frame stylization flickers: every frame settles in a different local optimum. Here each
frame after the first starts from the previous stylized frame warped along the optical flow
(where the flow is not trusted, newly visible parts and moving edges, the photo in the previous
result's colours), and its loss gains a temporal term, the squared difference from that warped
frame on the trusted pixels. The first frame of a run gets the preset's full iterations (a
multi-scale or tiled run, the engine's whole plan; a single-scale one, the later frames'
compiled step, which saves a graph trace); later frames a few iterations, since they start
close to their optimum. Every frame is a step of :mod:`nstyle.engine` (:class:`~nstyle.engine.Frame`),
its temporal term the loss's own (:class:`~nstyle.losses.TemporalTerm`).

Variant, named here: the paper weights its temporal term with a fixed λ in its own loss
units; ``temporal_weight`` is relative instead: a frame whose pixels move 10 px (RMS) from the
warped previous frame pays ``temporal_weight`` times the previous frame's own loss, so one
setting means the same for every backbone and preset.

Frames are written as they finish (``OUT.frames/``); a stopped run keeps them, and the same
command continues at the first missing frame. With ``workers`` (or Ray) the clip is cut into
chunks run at once; each chunk after the first starts a few frames early, and those frames
are cross-faded with the previous chunk's, so the joins do not jump.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .. import color
from ..backbones import precision
from ..callbacks import CountBar
from ..checkpoints import JOB_CHECKPOINT, Checkpoint, CheckpointError
from ..config import Config, configure
from ..engine import Engine, Frame, Run, final_image, working
from ..errors import VideoError
from ..events import FrameFinished
from ..io import ImageSource, check_output, file_sha256, load_image, save_image
from ..optimize import Callback
from ..outcome import COMPLETED, Outcome, stopped
from ..pool import TaskPool, check_workers, emit
from ..regions import Regions, load_regions
from ..signals import Interrupted, check
from ..solver import build_extractor
from ..wrap import calm_offsets
from .flow import flow, reliable, warp
from .frames import VIDEO_SUFFIXES, read_clip, write_frames, write_video

#: Later frames get this share of the first frame's iterations, and the temporal term this weight
#: (benchmarks/video.py measures both against other choices).
FRAME_SHARE = 0.2
TEMPORAL_WEIGHT = 0.3
#: Frames each chunk after the first runs before its own share, to cross-fade with the chunk before.
CHUNK_OVERLAP = 4


@dataclass
class VideoResult:
    """Where the clip went and how the run went."""

    output: Path
    frames: int
    seconds: float
    frame_seconds: list[float] = field(default_factory=list)
    outcome: Outcome = COMPLETED  # a signal's stop keeps the finished frames in ``work``
    work: Path | None = None  # where the finished frames are kept while a run is unfinished
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of frames to stylize in order, as plain data for a worker process or Ray."""

    index: int
    first: int  # 0-based number of its first frame in the clip
    frames: list[np.ndarray]
    styles: list[np.ndarray]
    config: dict[str, Any]
    frame_iterations: int
    temporal_weight: float
    folder: str
    regions: Regions | None = None  # at the frames' size: one mask serves the whole clip
    wrap_offsets: tuple[int, int] | None = None  # a tileable clip's roll, the same for every chunk


def chunk_folder(work: Path, index: int) -> Path:
    return work / f"chunk{index:02d}"


def frame_path(folder: Path, number: int) -> Path:
    """Frame ``number`` (0-based) of the clip in a chunk's folder."""
    return folder / f"frame_{number + 1:05d}.png"


def stylize_chunk(task: ChunkTask, callbacks: Sequence[Callback] = ()) -> tuple[int, list[float], Outcome]:
    """Stylize a chunk's frames in order, writing each as it finishes and skipping those already
    written (a resumed run); returns (chunk, seconds per frame stylized, how it ended).

    ``callbacks`` see each frame's iterations (in this process only); one raising Stop ends the
    chunk like a signal does, without the frame in progress."""
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    engine = _chunk_engine(task, callbacks)
    previous: np.ndarray | None = None
    seconds: list[float] = []
    for i in range(len(task.frames)):
        check()
        path = frame_path(folder, task.first + i)
        if path.exists():  # finished by an earlier run of the same command
            previous = np.asarray(Image.open(path).convert("RGB"))
            continue
        start = time.perf_counter()
        out, outcome = _frame(engine, task, i, previous)
        if outcome.halts:  # a half-optimised frame would be the next one's start: not kept
            return task.index, seconds, outcome
        save_image(Image.fromarray(out), path, force=True)
        seconds.append(time.perf_counter() - start)
        emit(FrameFinished(task.first + i, str(path), seconds[-1]))
        previous = out
    return task.index, seconds, COMPLETED


def _chunk_engine(task: ChunkTask, callbacks: Sequence[Callback]) -> Engine:
    """The engine for a chunk: its config, its feature network, its first frame as the run's photo."""
    cfg = Config.from_dict(task.config)
    choice = precision.resolve(cfg.precision, cfg.optimizer)
    styles = [Image.fromarray(s) for s in task.styles]
    run = Run(
        cfg,
        build_extractor(cfg, choice.name),
        choice.name,
        Image.fromarray(task.frames[0]),
        styles,
        {},
        list(callbacks),
        regions=task.regions,
        wrap_offsets=task.wrap_offsets,
    )
    return Engine(run)


def _frame(engine: Engine, task: ChunkTask, i: int, previous: np.ndarray | None) -> tuple[np.ndarray, Outcome]:
    """Frame ``i`` of the chunk as RGB uint8, and how its optimisation ended.

    The chunk's first frame gets the preset's whole plan (scales, tiles) unless it is one
    whole scale, which shares the later frames' compiled step. A later frame starts from the
    previous result warped along the flow, where the flow is trusted, and holds to it there.
    """
    frame, cfg = task.frames[i], engine.ctx.cfg
    if previous is None and (cfg.scale_count > 1 or cfg.tile):
        done = engine.run(engine.plan())
        return np.asarray(final_image(engine.ctx, done)[0]), done.outcome
    if previous is None:
        step = engine.frame(Frame(frame, cfg.iterations))
        return step.pixels, step.outcome
    return _later_frame(engine, task, frame, task.frames[i - 1], previous)


def _later_frame(
    engine: Engine, task: ChunkTask, frame: np.ndarray, before: np.ndarray, previous_stylized: np.ndarray
) -> tuple[np.ndarray, Outcome]:
    backward, forward = flow(frame, before), flow(before, frame)
    mask = reliable(backward, forward)[..., None]
    held = warp(previous_stylized, backward, sharp=True)
    # Where the flow is not trusted (newly visible, or a moving edge), the start is the photo
    # in the previous result's colours: its structure, for the content loss to keep, and the
    # painting's palette, so the few iterations a later frame gets go to brush strokes.
    recoloured = np.asarray(
        color.match_histogram(Image.fromarray(frame), Image.fromarray(previous_stylized)), np.float32
    )
    soft = gaussian_filter(mask, (2, 2, 0))
    start = soft * working(engine.ctx.cfg, held) + (1 - soft) * working(engine.ctx.cfg, recoloured)
    step = engine.frame(Frame(frame, task.frame_iterations, start, held, mask, task.temporal_weight))
    return step.pixels, step.outcome


def plan_chunks(count: int, workers: int) -> list[tuple[int, int]]:
    """``(first, end)`` frame ranges, one per worker; each after the first begins
    :data:`CHUNK_OVERLAP` frames before its share, for the cross-fade."""
    chunks = max(1, min(workers, count // (2 * CHUNK_OVERLAP)))
    bounds = np.linspace(0, count, chunks + 1).round().astype(int)
    return [(max(0, int(a) - (CHUNK_OVERLAP if i else 0)), int(b)) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def assemble(work: Path, chunks: list[tuple[int, int]], count: int):
    """The clip's frames in order, each from its chunk, cross-faded where two chunks overlap."""
    for number in range(count):
        owners = [i for i, (a, b) in enumerate(chunks) if a <= number < b]
        frames = [
            np.asarray(Image.open(frame_path(chunk_folder(work, i), number)).convert("RGB"), np.float32) for i in owners
        ]
        if len(frames) == 1:
            yield frames[0].astype(np.uint8)
            continue
        later_start = chunks[owners[-1]][0]
        share = (number - later_start + 1) / (CHUNK_OVERLAP + 1)  # the later chunk's weight rises across the overlap
        yield np.clip(np.rint((1 - share) * frames[0] + share * frames[-1]), 0, 255).astype(np.uint8)


def stylize_video(
    video: str | os.PathLike,
    style: ImageSource | Sequence[ImageSource],
    output: str | os.PathLike,
    *,
    preset: str = "default",
    config: Config | str | os.PathLike | None = None,
    frame_iterations: int | None = None,
    temporal_weight: float = TEMPORAL_WEIGHT,
    max_frames: int | None = None,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = False,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
    on_event: Callable[[Any], None] | None = None,
    **options: Any,
) -> VideoResult:
    """Stylize the clip ``video`` (a file PyAV reads, or a folder of frames) into ``output``.

    ``output`` is a video file (.mp4, .mov, .mkv, .webm, .gif: same frame rate, audio copied) or
    a folder for the frames. Settings are those of :func:`nstyle.stylize`; the first frame
    gets ``iterations``, later frames ``frame_iterations`` (default a fifth of them) and the
    temporal term at ``temporal_weight``. An existing output is replaced only with ``force``.
    ``on_event`` hears each :class:`~nstyle.events.FrameFinished`, wherever the frame was made;
    ``callbacks`` see every iteration of every frame, and so run in this process only (one
    worker, no Ray): one raising :class:`~nstyle.outcome.Stop` ends the run, keeping the finished
    frames for the same call to continue.
    """
    _check_run(workers, ray, bool(callbacks), temporal_weight, max_frames)
    cfg = configure(preset, config, options)
    chosen_seed = cfg.seed is not None
    if not chosen_seed:
        cfg = dataclasses.replace(cfg, seed=int(np.random.SeedSequence().entropy % 2**32))
    iterations = frame_iterations if frame_iterations is not None else max(1, round(cfg.iterations * FRAME_SHARE))
    if iterations < 1:
        raise VideoError(f"--frame-iterations: {iterations} must be >= 1")
    output = Path(output)
    as_folder = _check_video_output(output, force)
    pictures = [load_image(s, "style image") for s in (style if isinstance(style, (list, tuple)) else [style])]
    cfg.check_styles(len(pictures))
    clip = read_clip(video, cfg.size, max_frames)
    notices = _notices(clip)
    styles = [np.asarray(_recoloured(cfg, s, clip.frames[0])) for s in pictures]
    regions = load_regions(cfg.mask, cfg.style_masks, len(styles), cfg.style_blend, clip.frames[0].shape[1::-1])
    offsets = calm_offsets(clip.frames[0]) if cfg.tileable != "off" else None  # every chunk rolls alike
    for notice in notices:
        warnings.warn(notice, RuntimeWarning, stacklevel=2)

    work = output.with_name(output.name + ".frames")
    record = _job_record(cfg, Path(video), styles, regions, len(clip.frames), iterations, temporal_weight)
    record["chunks"] = plan_chunks(len(clip.frames), workers)
    arguments = _arguments(video, style, output, cfg, iterations, temporal_weight, max_frames, workers, ray)
    files = [video, *(style if isinstance(style, (list, tuple)) else [style])] if arguments else []
    job = Checkpoint.of_job("video", "video", arguments, cfg.to_dict(), files, record)
    saved = _claim_work(work, job, force, chosen_seed)
    cfg = dataclasses.replace(cfg, seed=saved["config"]["seed"])
    chunks = [tuple(c) for c in saved["chunks"]]
    shared = (styles, cfg.task_dict(), iterations, temporal_weight)
    tasks = [
        ChunkTask(i, a, clip.frames[a:b], *shared, str(chunk_folder(work, i)), regions, offsets)
        for i, (a, b) in enumerate(chunks)
    ]
    result = VideoResult(output, len(clip.frames), 0.0, work=work, notices=notices)
    bar = _FrameBar(work, sum(b - a for a, b in chunks), progress, on_event)
    _run_chunks(tasks, workers, ray, result, bar, callbacks)
    if result.outcome.halts:
        return result
    _write_output(assemble(work, chunks, len(clip.frames)), output, as_folder, clip)
    shutil.rmtree(work, ignore_errors=True)
    result.work = None
    return result


def _job_record(
    cfg: Config,
    video: Path,
    styles: list[np.ndarray],
    regions: Regions | None,
    frames: int,
    iterations: int,
    temporal_weight: float,
) -> dict[str, Any]:
    """What the frames already made were made from: a resumed job continues only when it is the same."""
    return {
        "config": cfg.to_dict(),
        "input": _fingerprint(video),
        "styles": [hashlib.sha256(s.tobytes()).hexdigest() for s in styles],
        "masks": None if regions is None else hashlib.sha256(regions.masks.tobytes()).hexdigest(),
        "frames": frames,
        "frame_iterations": iterations,
        "temporal_weight": temporal_weight,
    }


def _recoloured(cfg: Config, style: Image.Image, first: np.ndarray) -> Image.Image:
    """A style image in the clip's colours when ``preserve_color`` is "histogram" (matched to its first frame)."""
    return color.match_histogram(style, Image.fromarray(first)) if cfg.preserve_color == "histogram" else style


def _check_run(workers: int, ray: str | None, callbacks: bool, temporal_weight: float, max_frames: int | None) -> None:
    """The run's own settings, checked before anything is read or written."""
    check_workers(workers)
    if callbacks and (workers > 1 or ray is not None):
        raise VideoError("callbacks see every iteration in this process: use one worker and no Ray")
    if not (isinstance(temporal_weight, (int, float)) and math.isfinite(temporal_weight) and temporal_weight >= 0):
        raise VideoError(f"temporal weight: {temporal_weight} must be a finite number >= 0")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"--max-frames: {max_frames} must be >= 1")


def _write_output(frames: Any, output: Path, as_folder: bool, clip: Any) -> None:
    """The assembled frames as a folder of frames, or encoded (with the clip's audio) into a video file."""
    if as_folder:
        output.mkdir(parents=True, exist_ok=True)
        write_frames(frames, output)
        return
    audio = clip.source if clip.audio else None
    _write_atomically(output, lambda path: write_video(frames, path, clip.rate, audio))


def _arguments(
    video: str | os.PathLike,
    style: Any,
    output: Path,
    cfg: Config,
    frame_iterations: int,
    temporal_weight: float,
    max_frames: int | None,
    workers: int,
    ray: str | None,
) -> dict[str, Any] | None:
    """The call's arguments as the checkpoint keeps them, paths absolute; None when a style is an
    image in memory (only the same call from Python can continue that run)."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not all(isinstance(s, (str, os.PathLike)) for s in styles):
        return None
    return {
        "video": str(Path(video).resolve()),
        "styles": [str(Path(s).resolve()) for s in styles],
        "output": str(output.resolve()),
        "config": cfg.to_dict(),
        "frame_iterations": frame_iterations,
        "temporal_weight": temporal_weight,
        "max_frames": max_frames,
        "workers": workers,
        "ray": ray,
    }


def _check_video_output(output: Path, force: bool) -> bool:
    """Whether ``output`` is a folder of frames (else a video file), after checking it may be written."""
    as_folder = output.suffix.lower() not in VIDEO_SUFFIXES
    if as_folder and output.suffix:
        raise VideoError(
            f"output: unsupported video type '{output.suffix}' (use {', '.join(VIDEO_SUFFIXES)} or a folder)"
        )
    if as_folder and output.is_dir() and any(output.iterdir()) and not force:
        raise VideoError(f"output folder {output} is not empty, not overwriting without --force")
    if not as_folder:
        check_output(output, force, "output")
    return as_folder


def _notices(clip: Any) -> list[str]:
    """What the user should know about the clip before its frames are stylized."""
    notices = []
    if clip.variable_rate:
        notices.append(f"{clip.source} has a variable frame rate: written at its average, {float(clip.rate):.3g} fps")
    if len(clip.frames) == 1:
        notices.append(f"{clip.source} has one frame: stylized as an image")
    return notices


def _run_chunks(
    tasks: list[ChunkTask],
    workers: int,
    ray: str | None,
    result: VideoResult,
    bar: _FrameBar,
    callbacks: Sequence[Callback],
) -> None:
    """Every chunk, at once where there are workers; a stop keeps the frames finished so far."""
    start = time.perf_counter()
    work = functools.partial(stylize_chunk, callbacks=tuple(callbacks)) if callbacks else stylize_chunk
    try:
        with TaskPool(len(tasks) if ray is None else workers, ray, on_event=bar) as pool:
            for _, (_, seconds, outcome) in pool.map_unordered(work, tasks):
                result.frame_seconds += seconds
                if outcome.signum:
                    raise Interrupted(outcome.signum)
                if outcome.halts:  # a callback's Stop
                    result.outcome = outcome
                    break
    except KeyboardInterrupt as e:
        result.outcome = stopped(e)
    finally:
        bar.stop(result.outcome)
    result.seconds = time.perf_counter() - start


def _fingerprint(path: Path) -> str:
    """What identifies the input for resuming: a file's hash, or a folder's frame names and sizes."""
    if path.is_file():
        return file_sha256(path) or ""
    entries = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _claim_work(work: Path, job: Checkpoint, force: bool, chosen_seed: bool) -> dict[str, Any]:
    """Create the frames folder, or take up the one an earlier, identical run left; returns its record.

    ``job`` is this run's checkpoint, its identity the inputs and settings a continuing run must
    match. A resumed run keeps the earlier run's chunks (whatever ``--workers`` says now) and,
    unless a seed was given, its seed.
    """
    assert job.job is not None
    record = job.job["identity"]
    if work.exists() and force:
        shutil.rmtree(work)
    earlier = _earlier_record(work)
    if earlier is not None:
        if not chosen_seed:
            record = {**record, "config": {**record["config"], "seed": earlier["config"]["seed"]}}
        if {k: v for k, v in earlier.items() if k != "chunks"} != {k: v for k, v in record.items() if k != "chunks"}:
            raise VideoError(f"{work} holds frames of a run with other inputs or settings; --force starts over")
        return earlier
    work.mkdir(parents=True, exist_ok=True)
    job.save(work / JOB_CHECKPOINT)
    return record


def _earlier_record(work: Path) -> dict[str, Any] | None:
    """What the run that left ``work`` was: its checkpoint's identity (or an older nstyle's run.json)."""
    saved, older = work / JOB_CHECKPOINT, work / "run.json"
    try:
        if saved.exists():
            job = Checkpoint.load(saved).job or {}
            return dict(job["identity"])
        if older.exists():
            return dict(json.loads(older.read_text()))
    except (CheckpointError, OSError, ValueError, KeyError, TypeError):
        raise VideoError(f"{saved if saved.exists() else older} is damaged; --force starts over") from None
    return None


def _write_atomically(output: Path, write) -> None:
    """Encode into a temporary file beside ``output``, then rename: never half a video."""
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=output.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _FrameBar:
    """Frame i/N with an ETA while chunks run anywhere, from their FrameFinished events, and
    ``preview.png`` in the work folder kept as the latest finished frame."""

    def __init__(self, work: Path, total: int, progress: bool, also: Callable[[Any], None] | None = None):
        self.work, self.also = work, also  # ``also``: the caller's own subscriber
        done = len(list(work.glob("chunk*/frame_*.png")))  # left by an earlier run of the same command
        self.bar = CountBar(FrameFinished, total, done, "frame", progress)

    def __call__(self, event: object) -> None:
        self.bar(event)
        if isinstance(event, FrameFinished):
            try:
                shutil.copyfile(event.path, self.work / ".preview.png")
                os.replace(self.work / ".preview.png", self.work / "preview.png")
            except OSError:
                pass
        if self.also is not None:
            self.also(event)

    def stop(self, outcome: Outcome) -> None:
        self.bar.finish(outcome)
