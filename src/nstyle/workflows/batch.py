"""What probe, grid and sweep share: run trials into a folder, and turn results into tiles."""

from __future__ import annotations

import io as _io
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..callbacks import CountBar
from ..checkpoints import JOB_CHECKPOINT, Checkpoint
from ..errors import NStyleError
from ..events import TrialFinished
from ..io import check_output, file_sha256, read_metadata, save_bytes
from ..outcome import COMPLETED, Ending, Outcome, stopped
from ..pool import emit, subscribe
from ..signals import Interrupted, check
from .runner import Trial, TrialResult, run_trials

FAILED_TILE = (200, 200, 200)


def prepare_folder(out_dir: str | Path) -> Path:
    """The output folder, created if missing; an existing file there is an error."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NStyleError(f"output folder is a file: {out_dir}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NStyleError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
    return out_dir


def check_paths(paths: Sequence[Path], force: bool) -> None:
    """Refuse up front, before any work, to overwrite what is there."""
    for path in paths:
        check_output(path, force, what="file")


def finished_cells(
    trials: Sequence[Trial], out_dir: Path, derived: Sequence[Path], force: bool, progress: bool = True
) -> dict[str, TrialResult]:
    """Cells of an earlier, interrupted run of the same command, to reuse instead of running again.

    A cell counts as finished when ``out_dir/KEY.png`` carries nstyle's record of the same
    settings and the same input files (by hash): images are written whole (temp file, then
    rename), so even after a SIGKILL a cell is either complete or absent. Any other existing
    file is refused, as before, unless ``force`` (which runs every cell again). The ``derived``
    files (sheet, summary) are rebuilt from the cells, so they may be replaced when resuming.
    """
    if force:
        return {}
    reused: dict[str, TrialResult] = {}
    for trial in trials:
        path = out_dir / f"{trial.key}.png"
        if path.exists():
            result = _reusable(trial, path)
            if result is None:
                check_output(path, force, what="file")  # raises: a file that is not this run's cell
            if result is not None and result.status == "ok":
                reused[trial.key] = result
    if not reused:
        check_paths(derived, force)
    elif progress:
        print(
            f"nstyle: reusing {len(reused)} of {len(trials)} finished cells in {out_dir} (--force runs them again)",
            file=sys.stderr,
        )
    return reused


def _reusable(trial: Trial, path: Path) -> TrialResult | None:
    """The cell at ``path`` as a result, when its record matches ``trial``; else None."""
    try:
        record = read_metadata(path)
    except (NStyleError, ValueError):  # no record, or a damaged one: not a cell to trust
        return None
    wanted, used = dict(trial.config), dict(record.get("config") or {})
    if wanted.get("seed") is None:  # no seed asked for: whichever the run drew
        used["seed"] = None
    sources = [record.get("content"), *(record.get("styles") or [])]
    if used != wanted or [s.get("sha256") if isinstance(s, dict) else None for s in sources] != [
        file_sha256(trial.content),
        file_sha256(trial.style),
    ]:
        return None
    result: dict[str, Any] = record.get("result") or {}
    if Outcome.from_record(result).ending is Ending.SIGNAL:
        # This run's own cell, cut short by a signal: nstyle before 0.1 kept those as finished.
        print(f"nstyle: note: {path.name} was cut short by a signal; running it again", file=sys.stderr)
        path.unlink()
        return TrialResult(trial.key, "stopped")
    return TrialResult(
        trial.key, "ok", None, result.get("best_losses") or {}, float(result.get("seconds", 0.0)), path.read_bytes()
    )


def run_batch(
    trials: Sequence[Trial],
    out_dir: Path,
    *,
    job: Checkpoint,
    workers: int = 1,
    ray: str | None = None,
    force: bool = False,
    progress: bool = True,
    on_result: Callable[[TrialResult], None] | None = None,
) -> dict[str, TrialResult]:
    """Run ``trials``, writing ``out_dir/KEY.png`` for each success as soon as it arrives.

    ``job`` (the call that makes the whole batch) is saved as ``out_dir/run.ckpt.npz`` while the
    trials run, and removed when they are done. A stop signal ends the batch with
    :class:`~nstyle.signals.Interrupted` once the trials that finished are written; the trial it
    cut short writes nothing, so ``nstyle resume`` of that checkpoint, or the same command again,
    runs it (and every trial not yet run) and reuses the rest.
    """
    results: dict[str, TrialResult] = {}
    if not trials:  # everything reused: start no workers, no Ray
        return results
    saved = job.save(out_dir / JOB_CHECKPOINT)
    bar = CountBar(TrialFinished, len(trials), unit="trial", enabled=progress)
    outcome = COMPLETED
    try:
        with subscribe(bar):
            for result in run_trials(trials, workers, ray):
                check()
                if result.status == "stopped":
                    outcome = result.outcome
                    raise Interrupted(result.outcome.signum or signal.SIGINT)
                if result.png is not None:
                    save_bytes(result.png, out_dir / f"{result.key}.png", force=force)
                results[result.key] = result
                if on_result is not None:
                    on_result(result)
                emit(TrialFinished(result.key, result.status, result.seconds))
    except KeyboardInterrupt as e:
        outcome = outcome if outcome.early else stopped(e)
        raise
    finally:
        bar.finish(outcome)
    saved.unlink(missing_ok=True)  # done: nothing left to resume
    return results


def result_tile(result: TrialResult | None, size: int = 256) -> Image.Image:
    """The trial's image, or a grey square standing in for a failed one."""
    if result is None or result.png is None:
        return Image.new("RGB", (size, size), FAILED_TILE)
    return Image.open(_io.BytesIO(result.png)).convert("RGB")


def loss_caption(result: TrialResult | None) -> str:
    """'style 1.2e+03  content 45.6', or why the trial failed (shortened to fit a tile)."""
    if result is None:
        return "not run"
    if result.status != "ok":
        error = result.error or "failed"
        return "failed: " + (error if len(error) <= 60 else error[:57] + "...")
    return f"style {result.losses.get('style', float('nan')):.3g}  content {result.losses.get('content', float('nan')):.3g}"
