"""Checkpoints: a run's whole state on disk, so that a stopped run continues where it was.

Every kind of run writes the same format, and ``nstyle resume CHECKPOINT`` (:func:`nstyle.jobs.resume`)
continues any of them:

- an image (``kind="image"``, whole or tiled): ``OUT.ckpt.npz`` beside the output, as below;
- a video (``"video"``) and a batch of trials (``"batch"``: probe, grid, sweep): a checkpoint
  holding the call and its arguments (the job), in the video's ``OUT.frames/`` or the batch's
  folder, beside the finished frames or cells it continues from. Those are written whole as they
  finish, so the job needs no optimiser state: the resumed run does what is missing.

A checkpoint holds the optimiser's state (current and best image, Adam's step count and
moments, the moving average, the loss scale), the loss history, which scale of a multi-scale
run it was in, the validated config with its seed, the input files' hashes and the nstyle
version. It is one ``.npz`` (numpy arrays plus a JSON record; no pickles, so loading one
runs no code), written atomically.

In a tiled scale (:mod:`nstyle.tiles`) the image is the canvas assembled so far, and the
record says which pass it was in and which of that pass's tiles were finished: a resumed run
blends the remaining ones.

Adam continues bit-identically: same config, same seed, and the state restored exactly, on
the same machine and precision. L-BFGS continues from the saved iterate, but its curvature
history (the last 20 gradient pairs, 40 float32 images) is not saved: it would make a
checkpoint 40 times larger. The resumed run starts a fresh history there, as nstyle already
does after a failed line search; its loss continues from where it was, and its path differs from the
uninterrupted run's.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _version
from .errors import NStyleError
from .io import Canvas, file_sha256, save_bytes
from .optimize import OptimizerState, Progress

FORMAT = 1
JOB_CHECKPOINT = "run.ckpt.npz"  # a video's or a batch's, in its folder


class CheckpointError(NStyleError):
    """A checkpoint that cannot be used: missing, damaged, or from another version or run."""


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often a run writes its checkpoint."""

    path: Path
    every: int | None = None  # iterations; None: by time only
    seconds: float | None = 300.0  # at most this long between checkpoints; None: by iterations only
    output: str | None = None  # the image the run writes, recorded for `nstyle resume`


@dataclass
class Checkpoint:
    """A saved run: see the module docstring."""

    version: str
    config: dict[str, Any]
    sources: dict[str, Any]
    precision: str
    scale: int  # 0-based index of the scale it was in
    earlier_history: list[dict[str, float]]  # losses of the scales before it
    state: OptimizerState | None  # None for a job: its finished frames or cells are files of their own
    output: str | None = None  # where the CLI writes the result, for `nstyle resume`
    tiles: dict[str, Any] | None = (
        None  # in a tiled scale: {"pass": p, "done": [tile indices]}; state.image is the canvas
    )
    kind: str = "image"  # "image", "video" or "batch"
    job: dict[str, Any] | None = None  # a video or batch: {"call": name, "arguments": {...}} (see nstyle.jobs)

    @classmethod
    def of_job(
        cls,
        kind: str,
        call: str,
        arguments: dict[str, Any] | None,
        config: dict[str, Any],
        files: Sequence[str | Path],
        identity: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """A video's or batch's checkpoint: the call that continues it (None: in-memory inputs, only the
        same call from Python can), its input files' hashes, and what a continuing run must match."""
        sources = {
            "files": [
                {"path": str(Path(f).resolve()), "sha256": file_sha256(f) if Path(f).is_file() else None} for f in files
            ]
        }
        job = {"call": call, "arguments": arguments, "identity": identity}
        return cls(_version.__version__, config, sources, "", 0, [], None, kind=kind, job=job)

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename): a stop during the write keeps the old one."""
        record = {
            "format": FORMAT,
            "nstyle": self.version,
            "kind": self.kind,
            "job": self.job,
            "config": self.config,
            "sources": self.sources,
            "precision": self.precision,
            "scale": self.scale,
            "earlier_history": self.earlier_history,
            "output": self.output,
            "tiles": self.tiles,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        arrays: dict[str, np.ndarray] = {}
        if self.state is not None:
            state = self.state
            arrays = {"image": state.image, "best": state.best, "average": state.average}
            arrays.update({f"slot_{i}": np.asarray(v) for i, v in enumerate(state.slots)})
            record.update(
                slots=len(state.slots),
                iteration=state.iteration,
                best_loss=state.best_loss,
                best_iteration=state.best_iteration,
                loss_scale=state.loss_scale,
                history=state.history,
            )
        buffer = io.BytesIO()
        np.savez(buffer, record=np.frombuffer(json.dumps(record).encode(), np.uint8), **arrays)
        return save_bytes(buffer.getvalue(), path, force=True)

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read one, or raise :class:`CheckpointError` in one line saying what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                record = json.loads(data["record"].tobytes())
                arrays = {name: data[name] for name in data.files if name != "record"}
            kind = record.get("kind", "image")  # checkpoints from before jobs had one are images
            state = _state(record, arrays) if kind == "image" else None
            checkpoint = cls(
                record["nstyle"],
                record["config"],
                record["sources"],
                record["precision"],
                record["scale"],
                record["earlier_history"],
                state,
                record.get("output"),
                record.get("tiles"),
                kind,
                record.get("job"),
            )
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(
                f"checkpoint {path} is damaged or not an nstyle checkpoint ({type(e).__name__})"
            ) from None
        if record.get("format") != FORMAT or checkpoint.version != _version.__version__:
            raise CheckpointError(
                f"checkpoint {path} was written by nstyle {checkpoint.version}; this is nstyle {_version.__version__}: "
                f"start the run again"
            )
        return checkpoint

    def check_files(self) -> None:
        """A job's input files are still the ones it started with (by hash)."""
        for f in self.sources.get("files") or []:
            path = Path(f["path"])
            if not path.exists() or (f.get("sha256") is not None and file_sha256(path) != f["sha256"]):
                raise CheckpointError(f"{path} is missing or has changed since the run was checkpointed")

    def check_sources(self) -> tuple[str | Canvas, list[str]]:
        """The content and style paths (a texture's canvas for its content), after checking the
        files are the ones the run started with."""
        return checked_sources(self.sources, CheckpointError, "was checkpointed")


def checked_sources(
    sources: dict[str, Any], error: type[Exception], since: str, strict: bool = True
) -> tuple[str | Canvas, list[str]]:
    """A record's content (a path, or a texture's :class:`~nstyle.io.Canvas`) and style paths; each
    file (masks too) must exist and match its hash (``strict``; else a note says it changed)."""
    content, styles = sources.get("content"), list(sources.get("styles") or [])
    canvas = Canvas.from_record(content)
    files = [*([] if canvas else [content]), *styles]
    if not styles or not all(isinstance(s, dict) and s.get("path") for s in files):
        raise error("that run used in-memory images; run it again from Python with the same images")
    for s in [*files, *(sources.get("masks") or [])]:  # masks: the config names them, checked here too
        path = Path(s["path"])
        if not path.is_file() or file_sha256(path) != s.get("sha256"):
            if strict:
                raise error(f"{path} is missing or has changed since the run {since}")
            print(f"nstyle: note: {path} has changed since that run", file=sys.stderr)
    return canvas or content["path"], [s["path"] for s in styles]


def _state(record: dict[str, Any], arrays: dict[str, np.ndarray]) -> OptimizerState:
    slots = [arrays[f"slot_{i}"] for i in range(record["slots"])]
    return OptimizerState(
        record["iteration"],
        arrays["image"],
        arrays["best"],
        record["best_loss"],
        record["best_iteration"],
        arrays["average"],
        slots,
        record["loss_scale"],
        record["history"],
    )


class CheckpointWriter:
    """A callback that saves the run every ``plan.every`` iterations or ``plan.seconds`` seconds."""

    def __init__(self, plan: CheckpointPlan, make: Callable[[OptimizerState], Checkpoint]):
        self.plan, self.make = plan, make
        self.last = time.monotonic()

    def __call__(self, p: Progress) -> None:
        if self.due(p.iteration) and p.state is not None:
            self.save(p.state())

    def due(self, iteration: int | None = None) -> bool:
        """Whether a checkpoint is due: every ``plan.every`` iterations, or ``plan.seconds`` after the last."""
        return bool(self.plan.every and iteration and iteration % self.plan.every == 0) or (
            self.plan.seconds is not None and time.monotonic() - self.last >= self.plan.seconds
        )

    def save(self, state: OptimizerState) -> None:
        self.make(state).save(self.plan.path)
        self.last = time.monotonic()
