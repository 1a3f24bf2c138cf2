"""``nstyle sweep``: a base config and axes over any option, resumable, one sheet.

A sweep file (TOML)::

    content = "images/content/chelsea.jpg"   # relative to this file's folder
    style = "images/style/starry_night.jpg"
    preset = "default"                        # optional, as is config = "FILE.toml"

    [base]                                    # any stylize option
    weights = "random"
    size = 128

    [axes]                                    # the cartesian product of every axis ...
    optimizer = ["adam", "lbfgs"]
    style_weight = [1e4, 1e6]

    # ... or an explicit list instead of [axes]:
    # [[trials]]
    # optimizer = "adam"

Every finished trial is appended to ``manifest.jsonl`` at once, so a rerun (or a run after
Ctrl-C) skips what is done; a failing trial is recorded with its error and the rest go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoints import Checkpoint
from ..config import read_toml, resolve
from ..errors import ConfigError, NStyleError
from ..io import check_output, load_image, save_image
from ..pool import check_workers
from ..sheets import contact_sheet
from ..signals import stop_on_signals
from .batch import check_paths, loss_caption, prepare_folder, result_tile, run_batch
from .runner import Trial, TrialResult

SWEEP_KEYS = {"content", "style", "preset", "config", "base", "axes", "trials"}


@dataclass
class SweepSpec:
    """A parsed sweep file: inputs, the base settings, and each trial's varied values."""

    content: Path
    style: Path
    preset: str
    config: Path | None
    base: dict[str, Any]
    axes: dict[str, list[Any]]  # empty for an explicit trial list
    trials: list[dict[str, Any]]


def spec_record(spec: SweepSpec) -> dict[str, Any]:
    """``spec`` as JSON data, its paths absolute: what a sweep's checkpoint keeps (see :func:`spec_of`)."""
    record = dataclasses.asdict(spec)
    record.update(
        content=str(spec.content.resolve()),
        style=str(spec.style.resolve()),
        config=str(spec.config.resolve()) if spec.config else None,
    )
    return record


def spec_of(record: dict[str, Any]) -> SweepSpec:
    """The :class:`SweepSpec` a checkpoint kept."""
    config = Path(record["config"]) if record.get("config") else None
    return SweepSpec(**{**record, "content": Path(record["content"]), "style": Path(record["style"]), "config": config})


def load_sweep(path: str | Path, content: str | Path | None = None, style: str | Path | None = None) -> SweepSpec:
    """Read and check a sweep file; ``content``/``style`` override the file's inputs."""
    path = Path(path)
    data = read_toml(path, "sweep")
    unknown = set(data) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"sweep: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(SWEEP_KEYS))})")
    here = path.parent

    def local(value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"sweep: {key} must be a file path")
        p = Path(value)
        return p if p.is_absolute() else here / p

    if content is None and "content" not in data or style is None and "style" not in data:
        raise ConfigError("sweep: needs content and style (in the file, or --content/--style)")
    axes = data.get("axes", {})
    listed = data.get("trials", [])
    if bool(axes) == bool(listed):
        raise ConfigError("sweep: give either an [axes] table or a [[trials]] list (one of them, not both)")
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise ConfigError("sweep: every axis must be a non-empty list of values")
    if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
        raise ConfigError("sweep: trials must be a list of tables ([[trials]])")
    trials = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else listed
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError("sweep: base must be a table ([base])")
    spec = SweepSpec(
        content=Path(content) if content is not None else local(data["content"], "content"),
        style=Path(style) if style is not None else local(data["style"], "style"),
        preset=str(data.get("preset", "default")),
        config=local(data["config"], "config") if "config" in data else None,
        base=base,
        axes=axes,
        trials=trials,
    )
    resolve(spec.preset, spec.config, spec.base)  # a bad base would fail every trial: say so now
    return spec


@stop_on_signals()
def sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = True,
) -> Path:
    """Run every trial not already finished in ``out_dir``; write images, manifest and ``sheet.png``."""
    check_workers(workers)
    load_image(spec.content, "content image")
    load_image(spec.style, "style image")
    out_dir = prepare_folder(out_dir)
    manifest, sheet_path = out_dir / "manifest.jsonl", out_dir / "sheet.png"
    resuming = manifest.exists()
    if not resuming:
        check_output(sheet_path, force=False)
    done = _finished(manifest, out_dir)

    planned: list[tuple[dict[str, Any], str, dict[str, Any] | None, str | None]] = []
    for index, params in enumerate(spec.trials):
        try:
            config, error = resolve(spec.preset, spec.config, {**spec.base, **params}).to_dict(), None
        except NStyleError as e:
            config, error = None, str(e)
        identity = json.dumps([str(spec.content), str(spec.style), config or params], sort_keys=True, default=str)
        key = f"trial-{index:03d}-{hashlib.sha1(identity.encode()).hexdigest()[:8]}"
        planned.append((params, key, config, error))

    to_run = [
        Trial(key, str(spec.content), str(spec.style), config)
        for _, key, config, error in planned
        if config is not None and key not in done
    ]
    check_paths([out_dir / f"{t.key}.png" for t in to_run], force=False)
    params_of = {key: params for params, key, _, _ in planned}
    config_of = {key: config for _, key, config, _ in planned}

    def record(result: TrialResult) -> None:
        entry = {
            "key": result.key,
            "params": params_of[result.key],
            "config": config_of[result.key],
            "status": result.status,
            "error": result.error,
            "losses": result.losses,
            "seconds": round(result.seconds, 3),
            "image": f"{result.key}.png" if result.png is not None else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with manifest.open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    for _params, key, config, error in planned:  # invalid settings: recorded, never run
        if config is None and key not in done:
            record(TrialResult(key, "error", error))
    results = dict(done)
    job = Checkpoint.of_job(
        "batch",
        "sweep",
        {"spec": spec_record(spec), "out_dir": str(out_dir.resolve()), "workers": workers, "ray": ray},
        {},
        [spec.content, spec.style],
    )
    results.update(run_batch(to_run, out_dir, job=job, workers=workers, ray=ray, progress=progress, on_result=record))
    for _, key, config, error in planned:
        if config is None:
            results[key] = TrialResult(key, "error", error)

    tiles = [
        (result_tile(results.get(key)), f"{_label(params)}\n{loss_caption(results.get(key))}")
        for params, key, _, _ in planned
    ]
    columns = len(next(reversed(spec.axes.values()))) if spec.axes else math.ceil(math.sqrt(len(tiles)))
    title = f"sweep over {', '.join(spec.axes) or 'listed trials'} - {spec.content.name} x {spec.style.name}"
    save_image(contact_sheet(tiles, columns=columns, tile_size=224, title=title), sheet_path, force=True)
    return sheet_path


def _finished(manifest: Path, out_dir: Path) -> dict[str, TrialResult]:
    """Trials whose last manifest entry is a success with its image still on disk."""
    last: dict[str, dict[str, Any]] = {}
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            try:
                entry = json.loads(line)
                last[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash: that trial simply runs again
    done = {}
    for key, entry in last.items():
        image = out_dir / f"{key}.png"
        if entry.get("status") == "ok" and image.is_file():
            done[key] = TrialResult(
                key, "ok", None, entry.get("losses") or {}, entry.get("seconds", 0.0), image.read_bytes()
            )
    return done


def _label(params: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, list):
            return ",".join(show(v) for v in value)
        return str(value)

    return "\n".join(f"{k}={show(v)}" for k, v in params.items()) or "(base)"
