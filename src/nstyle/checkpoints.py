"""Checkpoints: a run's whole state on disk, so that a stopped run continues where it was.

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
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _version
from .errors import NStyleError
from .io import file_sha256, save_bytes
from .optimize import OptimizerState, Progress

FORMAT = 1


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
    state: OptimizerState
    output: str | None = None  # where the CLI writes the result, for `nstyle resume`
    tiles: dict[str, Any] | None = None  # in a tiled scale: {"pass": p, "done": [tile indices]}; state.image is the canvas

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename): a stop during the write keeps the old one."""
        arrays = {"image": self.state.image, "best": self.state.best, "average": self.state.average}
        arrays.update({f"slot_{i}": np.asarray(v) for i, v in enumerate(self.state.slots)})
        record = {
            "format": FORMAT, "nstyle": self.version, "config": self.config, "sources": self.sources,
            "precision": self.precision, "scale": self.scale, "earlier_history": self.earlier_history,
            "output": self.output, "slots": len(self.state.slots), "iteration": self.state.iteration,
            "best_loss": self.state.best_loss, "best_iteration": self.state.best_iteration,
            "loss_scale": self.state.loss_scale, "history": self.state.history, "tiles": self.tiles,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }  # fmt: skip
        buffer = io.BytesIO()
        np.savez(buffer, record=np.frombuffer(json.dumps(record).encode(), np.uint8), **arrays)
        return save_bytes(buffer.getvalue(), path, force=True)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        """Read one, or raise :class:`CheckpointError` in one line saying what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                record = json.loads(data["record"].tobytes())
                arrays = {name: data[name] for name in data.files if name != "record"}
            slots = [arrays[f"slot_{i}"] for i in range(record["slots"])]
            state = OptimizerState(record["iteration"], arrays["image"], arrays["best"], record["best_loss"],
                                   record["best_iteration"], arrays["average"], slots, record["loss_scale"],
                                   record["history"])  # fmt: skip
            checkpoint = cls(record["nstyle"], record["config"], record["sources"], record["precision"], record["scale"],
                             record["earlier_history"], state, record.get("output"), record.get("tiles"))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"checkpoint {path} is damaged or not an nstyle checkpoint ({type(e).__name__})") from None
        if record.get("format") != FORMAT or checkpoint.version != _version.__version__:
            raise CheckpointError(
                f"checkpoint {path} was written by nstyle {checkpoint.version}; this is nstyle {_version.__version__}: "
                f"start the run again"
            )
        return checkpoint

    def check_sources(self) -> tuple[str, list[str]]:
        """The content and style paths, after checking the files are the ones the run started with."""
        sources = [self.sources.get("content"), *(self.sources.get("styles") or [])]
        if len(sources) < 2 or not all(isinstance(s, dict) and s.get("path") for s in sources):
            raise CheckpointError("this checkpoint's run used in-memory images; resume it from Python with the same images")
        for s in sources:
            path = Path(s["path"])
            if not path.is_file() or file_sha256(path) != s.get("sha256"):
                raise CheckpointError(f"{path} is missing or has changed since the run was checkpointed")
        return sources[0]["path"], [s["path"] for s in sources[1:]]


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
