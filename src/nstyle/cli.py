"""The ``nstyle`` command: a thin layer over :mod:`nstyle.api`.

Arguments are checked (paths, numbers, output) before Keras and its backend are imported, so bad
input fails in a fraction of a second with one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._version import __version__
from .backbones import REGISTRY
from .backends import select
from .config import Config, preset_description, preset_names, resolve
from .errors import NStyleError
from .signals import Interrupted, deferred, received, stop_on_signals

EXIT_USER_ERROR = 2
COMMANDS = (
    "layers", "presets", "reproduce", "resume", "probe", "grid", "sweep", "tune", "video", "texture", "ui", "info"
)  # fmt: skip

TEXTURE_DESCRIPTION = """\
Make a texture from STYLE alone: no photo, a square of --size px started from noise, the
sample's strokes at the sample's own size (unless --style-scale says otherwise). With
--tileable it wraps, to tile a wall or a game texture without a seam.
"""

DESCRIPTION = """\
Stylize CONTENT in the manner of STYLE by optimising the image's pixels so that its
features in a pretrained network (ResNet50 by default) match CONTENT's, and its
feature correlations (Gram matrices) match STYLE's.

Settings are layered: --preset, then --config FILE.toml, then the flags below.
"""

EPILOG = """\
other commands:
  nstyle layers BACKBONE [--size PX]   list a backbone's layers, aliases, shapes, parameters
  nstyle presets                       list the shipped presets
  nstyle reproduce OUT.png [-o NEW]    run again from the record inside an nstyle output
  nstyle resume OUT.ckpt.npz           continue a stopped run from its checkpoint
  nstyle probe CONTENT STYLE --layers L1 L2 ... -o DIR   one run per layer, on a contact sheet
  nstyle grid --content A B --style X Y -o DIR          every content x every style, one figure
  nstyle sweep SWEEP.toml -o DIR                        runs over settings (see README)
  nstyle tune CONTENT STYLE -o DIR [--budget S]         searches settings, judged by another network
  nstyle video CLIP.mp4 STYLE -o OUT.mp4               a clip, frame by frame, held steady by optical flow
  nstyle ui [--host 127.0.0.1] [--port 7860]            the browser app (needs .[ui])
  nstyle info                          versions, devices, what --precision auto picks, weights, extras

examples:
  nstyle photo.jpg painting.jpg -o out.png
  nstyle photo.jpg painting.jpg -o seed.png --preset seed --iterations 300 --strip
  nstyle photo.jpg painting.jpg -o out.png --style-layers conv1_relu conv2_block3_out:0.5
  nstyle photo.jpg painting.jpg -o out.png --weights random:0   # offline, untrained features

weights: 'imagenet' downloads once into ~/.keras/models; offline, copy that file there, or
pass --weights PATH to any Keras weights file for the backbone (see README).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 128 + signal when stopped: 130 Ctrl-C, 143 SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"nstyle: note: {message}\n"
    try:
        with stop_on_signals():
            if argv and argv[0] in COMMANDS:
                handlers = {
                    "layers": _layers,
                    "presets": _presets,
                    "reproduce": _reproduce,
                    "resume": _resume,
                    "probe": _probe,
                    "grid": _grid,
                    "sweep": _sweep,
                    "tune": _tune,
                    "video": _video,
                    "texture": _texture,
                    "ui": _ui,
                    "info": _info,
                }
                return handlers[argv[0]](argv[1:])
            return _stylize(argv)
    except NStyleError as e:
        say(f"nstyle: error: {e}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:  # a command's own handler says what was kept; here nothing was
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        say(f"nstyle: stopped by {signal.Signals(signum).name} before anything was computed; nothing was written")
        return 128 + signum
    except MemoryError:
        say("nstyle: error: out of memory; try a smaller --size")
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `nstyle layers resnet50 | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line on stderr (exit 2) like every other bad input.

    argparse's own ``error`` prints the usage first: two lines for ``nstyle``, before the one
    that says what was wrong. ``--help`` still shows it.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(texture: bool = False) -> argparse.ArgumentParser:
    """The stylize parser (also used to document the flags in the README); ``texture``: the
    texture command's, the same without CONTENT."""
    if texture:
        p = Parser(
            prog="nstyle texture",
            usage="nstyle texture STYLE -o OUTPUT [--size PX] [--tileable] [options]",
            description=TEXTURE_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    else:
        p = Parser(
            prog="nstyle",
            usage=f"nstyle CONTENT STYLE -o OUTPUT [options]\n       nstyle {{{','.join(COMMANDS)}}} ...",
            description=DESCRIPTION,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("content", metavar="CONTENT", help="the photo to keep the structure of")
    p.add_argument("style", metavar="STYLE", nargs="+", help="the picture(s) to take the style from")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="where to write: .png, .jpg or .tif")
    p.add_argument("--force", action="store_true", help="replace OUTPUT (and its .json record) if they exist")
    p.add_argument("--version", action="version", version=f"nstyle {__version__}")

    add_settings(p)
    add_parallel(p, "tiles of a tiled scale at once (see --max-memory)")

    w = p.add_argument_group("print output")
    w.add_argument("--dpi", type=float, metavar="N", help="resolution written into the file, e.g. 300 for print")
    w.add_argument(
        "--bit-depth",
        type=int,
        choices=(8, 16),
        default=8,
        help="bits per channel: 16 writes the unrounded result (.png or .tif)",
    )
    w.add_argument("--quality", type=int, default=95, metavar="Q", help="JPEG quality, 1-100 (default 95)")

    o = p.add_argument_group("watching the run")
    o.add_argument("--snapshot-every", type=int, metavar="N", help="also write OUTPUT_0050.png ... every N iterations")
    o.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="save the run's state to OUTPUT.ckpt.npz every N iterations (default: every 5 minutes, "
        "and when stopped); `nstyle resume` continues it",
    )
    o.add_argument("--strip", action="store_true", help="also write OUTPUT_strip.png: 10 intermediate images")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def add_settings(p: argparse.ArgumentParser) -> None:
    """The settings flags, shared by stylize, probe, grid and video: one per :class:`Config` field, built
    from the field's declaration (:func:`nstyle.config.setting`)."""
    s = p.add_argument_group("settings (each overrides --preset and --config)")
    s.add_argument("--preset", default="default", help=f"base settings: {', '.join(preset_names())} (default: default)")
    s.add_argument("--config", metavar="FILE.toml", help="a TOML file of settings, same keys as the presets")
    for f in dataclasses.fields(Config):
        s.add_argument(
            f"--{f.name.replace('_', '-')}",
            **f.metadata["flag"],
            help=f.metadata["help"].format(backbones=", ".join(REGISTRY)),
        )


def settings_from(args: argparse.Namespace) -> Config:
    """The validated Config for parsed settings flags: preset < --config < flags."""
    names = [f.name for f in dataclasses.fields(Config)]
    overrides = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    cfg = resolve(args.preset, args.config, overrides)
    select(cfg.backend or None)  # before anything imports Keras: it picks its backend once
    return cfg


def add_parallel(p: argparse.ArgumentParser, what: str = "trials at once") -> None:
    """--workers and --ray: trials of probe, grid, sweep and tune, or tiles of a print-size image."""
    g = p.add_argument_group("running in parallel")
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"{what} in N local processes, each on its share of the CPU threads",
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run them as Ray tasks: a local Ray, or the cluster at ADDRESS (needs .[ray])",
    )


def _stylize(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return _run(args.content, args.style, settings_from(args), args)


def _texture(argv: list[str]) -> int:
    """A texture from the style alone: the stylize command's run on a blank canvas (nstyle.api.texture_settings)."""
    from .io import Canvas, texture_settings

    args = build_parser(texture=True).parse_args(argv)
    size = args.size or resolve(args.preset, args.config).size
    names = [f.name for f in dataclasses.fields(Config)]
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    cfg = resolve(args.preset, args.config, {**texture_settings(args.style[0], size), **given, "size": size})
    select(cfg.backend or None)
    return _run(Canvas(size, size), args.style, cfg, args)


def checkpoint_path(output: Path) -> Path:
    """Where a run writing ``output`` keeps its checkpoint: ``out.png`` -> ``out.ckpt.npz``."""
    return output.with_name(f"{output.stem}.ckpt.npz")


def _run(content: str, styles: list[str], cfg: Config, args: argparse.Namespace, resume: Any = None) -> int:
    """Check every path, then stylize and write the outputs; shared by stylize, reproduce and resume."""
    from .io import check_image_output, check_output, load_image, preflight, sidecar_path

    select(cfg.backend or None)

    own = Path(resume.output).resolve() if resume is not None and resume.output else None
    force = args.force or (own is not None and Path(args.output).resolve() == own)  # a resumed run's own output
    output = check_image_output(args.output, force)
    check_output(sidecar_path(output), force, what="sidecar")
    every = getattr(args, "checkpoint_every", None)
    if every is not None and every < 1:
        raise NStyleError(f"--checkpoint-every: {every} must be >= 1")
    ckpt = checkpoint_path(output)
    if ckpt.exists() and resume is None and not args.force:
        raise NStyleError(
            f"{ckpt} exists: a stopped run; continue it with `nstyle resume {ckpt}`, or --force to start over"
        )
    load_image(content, "content image")
    for style in styles:
        load_image(style, "style image")
    cfg.check_styles(len(styles))
    extra: list[Path] = []
    snapshot_every = getattr(args, "snapshot_every", None)
    if snapshot_every is not None:
        if snapshot_every < 1:
            raise NStyleError(f"--snapshot-every: {snapshot_every} must be >= 1")
        from .callbacks import snapshot_paths

        extra += snapshot_paths(output, snapshot_every, cfg.total_iterations)
    if getattr(args, "strip", False):
        from .callbacks import strip_path

        extra.append(strip_path(output))
    for path in extra:
        check_output(path, args.force)
    _check_print_options(args, output)
    from .plan import check_budget

    check_budget(cfg.max_memory)
    # Every image (a PNG holds at most 3 bytes a pixel, 6 in 16 bits) and the checkpoint: five
    # float32 images of a scale that runs whole (2048 px at most), or a tiled scale's canvas.
    bits = getattr(args, "bit_depth", 8)
    checkpoint_bytes = max(min(cfg.size, 2048) ** 2 * 60, cfg.size**2 * 12)
    with preflight(output, needed=cfg.size**2 * (3 * bits // 8 * (1 + len(extra))) + checkpoint_bytes + 2**20):
        return _stylize_and_write(content, styles, cfg, args, output, force, every, ckpt, resume)


def _check_print_options(args: argparse.Namespace, output: Path) -> None:
    """--dpi, --quality, --bit-depth and --workers, before any work."""
    import math

    from .pool import check_workers

    dpi = getattr(args, "dpi", None)
    if dpi is not None and not (math.isfinite(dpi) and 0 < dpi <= 100_000):
        raise NStyleError(f"--dpi: {dpi:g} must be a resolution between 0 and 100000")
    if not 1 <= getattr(args, "quality", 95) <= 100:
        raise NStyleError(f"--quality: {args.quality} must be between 1 and 100")
    if getattr(args, "bit_depth", 8) == 16 and output.suffix.lower() in (".jpg", ".jpeg"):
        raise NStyleError("--bit-depth 16: JPEG holds 8 bits per channel; write .png or .tif")
    check_workers(getattr(args, "workers", 1))


def _stylize_and_write(
    content: str,
    styles: list[str],
    cfg: Config,
    args: argparse.Namespace,
    output: Path,
    force: bool,
    every: int | None,
    ckpt: Path,
    resume: Any,
) -> int:
    """The work of :func:`_run`, once every check has passed and the output is claimed."""
    from .api import stylize  # imports Keras and its backend: only now that the input is known good
    from .backends import use_all_cores
    from .callbacks import Snapshots, Strip, strip_path
    from .io import save_image, save_with_fallback

    use_all_cores()

    snapshot_every = getattr(args, "snapshot_every", None)
    callbacks: list[Any] = []
    if snapshot_every:
        callbacks.append(Snapshots(output, snapshot_every, cfg.total_iterations, args.force))
    strip = Strip(cfg.total_iterations) if getattr(args, "strip", False) else None
    if strip:
        callbacks.append(strip)
    from .checkpoints import CheckpointPlan

    plan = CheckpointPlan(ckpt, every, None if every else 300.0, str(output))
    try:
        result = stylize(
            content,
            styles,
            config=cfg,
            callbacks=callbacks,
            progress=not args.quiet,
            checkpoint=plan,
            resume=resume,
            workers=getattr(args, "workers", 1),
            ray=getattr(args, "ray", None),
            bits=getattr(args, "bit_depth", 8),
        )
    except Interrupted as e:  # before the first iteration finished: there is nothing to write
        say(
            f"nstyle: stopped by {signal.Signals(e.signum).name} before the first iteration finished: "
            f"nothing was computed yet, and nothing was written"
        )
        return 128 + e.signum
    late = None  # a signal while the result is written: the writing finishes first
    try:
        with deferred():
            written = save_with_fallback(
                result.image,
                output,
                force=force,
                metadata=result.metadata(),
                dpi=getattr(args, "dpi", None),
                quality=getattr(args, "quality", 95),
                high=result.high,
            )
            if strip and strip.last is not None:
                save_image(strip.sheet(), strip_path(output), force=args.force)
    except Interrupted as e:
        late = e.signum
    say(_last_line(result, cfg, written, ckpt), quiet=args.quiet and not result.outcome.early and not late)
    signum = result.outcome.signum or late
    return 128 + signum if signum else 0


def _last_line(result: Any, cfg: Config, written: Path, ckpt: Path) -> str:
    """What the run's last line says: where the picture went, and why the run ended when it ended early."""
    outcome = result.outcome
    best = f"best loss {result.best_loss:.4g} at iteration {result.best_iteration}"
    if outcome.signum:
        kept = f"; `nstyle resume {ckpt}` continues it" if ckpt.exists() else ""
        what = f"the best image so far ({best})" if result.best_iteration else "the image as far as it got"
        count = f"{len(result.history)} of {cfg.total_iterations} iterations"
        when = f" ({count})" if outcome.where else f" at iteration {len(result.history)}/{cfg.total_iterations}"
        return f"nstyle: {outcome.describe()}{when}; wrote {what} to {written}{kept}"
    line = f"wrote {written} ({best}, {result.seconds:.1f} s)"
    if outcome.early:  # said even with --quiet: the user asked for more iterations
        line += f"; {outcome.describe()} after {len(result.history)} of {cfg.total_iterations} iterations"
    return line


def say(line: str, quiet: bool = False) -> None:
    """A line on stderr that cannot fail the run: after SIGHUP the terminal may be gone (EIO).

    Once stderr cannot be written, stdout and stderr go to /dev/null, so that nothing else
    (tqdm, the interpreter's flush at exit) fails on them either.
    """
    if quiet:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        _detach_terminal()


def _detach_terminal() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)


def _video(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle video",
        description="Stylize a clip (a video file or a folder of frames): the first frame in full, each later one "
        "from the previous result warped by optical flow, with a temporal loss (Ruder et al. 2016). Finished frames "
        "are kept in OUT.frames/ as they finish; running the same command again continues a stopped run.",
    )
    p.add_argument("input", metavar="INPUT", help="a video file (mp4, webm, mov, gif...) or a folder of frames")
    p.add_argument("style", metavar="STYLE", nargs="+", help="the picture(s) to take the style from")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="a video (.mp4 .mov .mkv .webm .gif) or a folder"
    )
    p.add_argument("--force", action="store_true", help="replace OUT, and start over rather than continue")
    p.add_argument(
        "--frame-iterations",
        type=int,
        metavar="N",
        help="iterations of each frame after the first (default: a fifth of --iterations)",
    )
    p.add_argument(
        "--temporal-weight",
        type=float,
        default=0.3,
        metavar="W",
        help="how strongly a frame holds to the previous one warped: a 10 px RMS change costs W x the "
        "previous frame's loss (0: off; default 0.3)",
    )
    p.add_argument("--max-frames", type=int, metavar="N", help="stylize the first N frames (needed past 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings(p)
    add_parallel(p, "chunks of the clip at once")
    args = p.parse_args(argv)
    import importlib.util
    import math

    from .io import load_image

    if importlib.util.find_spec("av") is None or importlib.util.find_spec("cv2") is None:
        raise NStyleError("nstyle video needs PyAV and OpenCV: pip install -e '.[video]'")
    if not math.isfinite(args.temporal_weight) or args.temporal_weight < 0:
        raise NStyleError(f"--temporal-weight: {args.temporal_weight:g} must be a finite number >= 0")
    for name in ("frame_iterations", "max_frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise NStyleError(f"--{name.replace('_', '-')}: {value} must be >= 1")
    if not Path(args.input).exists():
        raise NStyleError(f"input video not found: {args.input}")
    for style in args.style:
        load_image(style, "style image")
    cfg = settings_from(args)
    from .backends import use_all_cores
    from .io import preflight
    from .video import stylize_video

    # Each frame twice (kept in OUT.frames/, then encoded or copied), for the frames asked for or a short clip.
    needed = cfg.size**2 * 3 * 2 * (args.max_frames or 300)
    with preflight(args.output, needed=needed):
        use_all_cores()
        result = stylize_video(
            args.input,
            args.style,
            args.output,
            config=cfg,
            frame_iterations=args.frame_iterations,
            temporal_weight=args.temporal_weight,
            max_frames=args.max_frames,
            workers=args.workers,
            ray=args.ray,
            progress=not args.quiet,
            force=args.force,
        )
    return _report_video(result, args.quiet)


def _report_video(result: Any, quiet: bool) -> int:
    """The video run's last line: what it wrote, or where its finished frames wait to be continued."""
    from .checkpoints import JOB_CHECKPOINT

    done = len(result.frame_seconds)
    if result.outcome.signum:
        say(
            f"nstyle: {result.outcome.describe()}; the finished frames are kept in {result.work}: "
            f"`nstyle resume {result.work / JOB_CHECKPOINT}`, or the same command again, continues it"
        )
        return 128 + result.outcome.signum
    per_frame = sum(result.frame_seconds) / done if done else 0.0
    say(f"wrote {result.output} ({result.frames} frames, {per_frame:.1f} s a frame, {result.seconds:.0f} s)", quiet)
    return 0


def _info(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle info", description="Versions, backends, devices, what --precision auto picks, weights and extras."
    )
    p.add_argument(
        "--backend", metavar="NAME", help="report as seen from this backend (default: KERAS_BACKEND, else tensorflow)"
    )
    select(p.parse_args(argv).backend)
    from .info import report

    print(report())
    return 0


def _layers(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle layers",
        description="List a backbone's layers for --*-layers; the last column marks what --backbone NAME alone uses.",
    )
    p.add_argument("backbone", help=", ".join(REGISTRY))
    p.add_argument("--size", type=int, metavar="PX", help="show output shapes for a PX x PX input")
    args = p.parse_args(argv)
    from .backbones import describe_layers, get_backbone
    from .config import MAX_SIZE, MIN_SIZE

    backbone = get_backbone(args.backbone)
    if args.size is not None and not MIN_SIZE <= args.size <= MAX_SIZE:
        raise NStyleError(f"--size: {args.size} must be between {MIN_SIZE} and {MAX_SIZE}")
    from .backends import load_keras

    load_keras()
    aliases = backbone.alias_map()
    roles: dict[str, list[str]] = {}
    for role, names in (("content", backbone.content_layers), ("style", backbone.style_layers)):
        for name in names:
            roles.setdefault(aliases.get(name, name), []).append(role)
    rows = [
        (
            r.name,
            r.alias,
            "x".join("?" if d is None else str(d) for d in r.shape),
            f"{r.params:,}",
            "+".join(roles.get(r.name, [])),
        )
        for r in describe_layers(args.backbone, args.size)
    ]
    header = ("layer", "alias (Keras 2.2)", "output shape", "parameters", "default for")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _presets(argv: list[str]) -> int:
    Parser(prog="nstyle presets", description="List the shipped presets.").parse_args(argv)
    for name in preset_names():
        print(f"{name:16} {preset_description(name)}")
    return 0


def _reproduce(argv: list[str]) -> int:
    p = Parser(prog="nstyle reproduce", description="Run again from an nstyle output's record.")
    p.add_argument("image", help="an image nstyle wrote (PNG with its record, or any format with its .json)")
    p.add_argument("-o", "--output", help="where to write (default: IMAGE-reproduced with the same extension)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from .io import read_metadata

    record = read_metadata(args.image)
    from .checkpoints import checked_sources

    content, styles = checked_sources(record, NStyleError, "was made", strict=False)
    from .backbones.seeded import GENERATOR

    drawn_by = record.get("result", {}).get("random_weights")
    if str(record["config"].get("weights", "")).startswith("random") and drawn_by != GENERATOR:
        print(
            f"nstyle: note: that run's random weights were drawn by {drawn_by or 'its backend'}, "
            f"these by NumPy ({GENERATOR}): the result cannot match it exactly",
            file=sys.stderr,
        )
    source = Path(args.image)
    args.output = args.output or str(source.with_name(f"{source.stem}-reproduced{source.suffix}"))
    # 'auto' may pick differently on this machine: run in the precision that run resolved to.
    used = record.get("result", {}).get("precision")
    config = Config.from_dict({**record["config"], **({"precision": used} if used else {})})
    return _run(content, styles, config, args)


def _resume(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle resume",
        description="Continue a stopped run (an image, a video, or a probe, grid, sweep or tune) from its checkpoint.",
    )
    p.add_argument(
        "checkpoint",
        help="the OUTPUT.ckpt.npz a stopped image left beside its output, or the "
        "run.ckpt.npz in a stopped video's OUTPUT.frames/ or a stopped batch's folder",
    )
    p.add_argument("-o", "--output", help="where to write an image (default: the run's own output)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it is not the run's own")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="as for a run (default: every 5 minutes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from . import jobs

    checkpoint = jobs.load(args.checkpoint)
    if checkpoint.kind != "image":
        if args.output:
            raise NStyleError(f"a {checkpoint.kind} continues into its own output; -o is for an image's checkpoint")
        return _resume_job(args.checkpoint, checkpoint, args.quiet)
    content, styles = checkpoint.check_sources()
    args.output = args.output or checkpoint.output
    if not args.output:
        raise NStyleError("this checkpoint records no output path: give -o OUTPUT")
    config = Config.from_dict({**checkpoint.config, "precision": checkpoint.precision})
    return _run(content, styles, config, args, resume=checkpoint)


def _resume_job(path: str, checkpoint: Any, quiet: bool) -> int:
    """A stopped video or batch, continued by the call it recorded, with its command's last line."""
    from . import jobs

    arguments = checkpoint.job["arguments"]
    if checkpoint.kind == "video":
        from .backends import select, use_all_cores

        select(arguments.get("config", {}).get("backend") or None)
        use_all_cores()
        return _report_video(jobs.resume(path, progress=not quiet), quiet)
    folder = arguments["out_dir"]
    size = int(checkpoint.config.get("size", 512))
    return _batch(folder, size, 1, lambda: jobs.resume(path, progress=not quiet))  # type: ignore[arg-type, return-value]


def _probe(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle probe",
        description="Stylize once per candidate layer, that layer alone, and lay the results out on one "
        "labelled sheet (DIR/sheet.png) with DIR/summary.csv: the way to find good layers for a backbone.",
    )
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("style", metavar="STYLE")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for images, sheet.png, summary.csv")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--layers", nargs="+", metavar="LAYER", help="candidate layers (Keras names or aliases)")
    which.add_argument("--blocks", action="store_true", help="every stage/block output of the backbone")
    p.add_argument("--probe", choices=("style", "content"), default="style", help="which term the layer is for")
    p.add_argument("--force", action="store_true", help="replace files already in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings(p)
    add_parallel(p)
    args = p.parse_args(argv)
    from .workflows import probe

    cfg = settings_from(args)
    candidates = len(args.layers) if args.layers else 32  # --blocks: a backbone has fewer stage and block outputs
    return _batch(
        args.output,
        cfg.size,
        candidates,
        lambda: probe(
            args.content,
            args.style,
            cfg,
            args.output,
            layers=args.layers or (),
            blocks=args.blocks,
            kind=args.probe,
            workers=args.workers,
            ray=args.ray,
            force=args.force,
            progress=not args.quiet,
        ),
        "summary.csv",
    )


def _grid(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle grid",
        description="Stylize every content image with every style image; write each result and "
        "DIR/grid.png (styles across the top, contents down the side), as in the notebook's figure.",
    )
    p.add_argument("--content", nargs="+", required=True, metavar="IMAGE")
    p.add_argument("--style", nargs="+", required=True, metavar="IMAGE")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the images and grid.png")
    p.add_argument("--force", action="store_true", help="replace files already in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings(p)
    add_parallel(p)
    args = p.parse_args(argv)
    from .workflows import grid

    cfg = settings_from(args)
    cells = len(args.content) * len(args.style)
    return _batch(
        args.output,
        cfg.size,
        cells,
        lambda: grid(
            args.content,
            args.style,
            cfg,
            args.output,
            workers=args.workers,
            ray=args.ray,
            force=args.force,
            progress=not args.quiet,
        ),
    )


def _sweep(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle sweep",
        description="Run the trials a sweep file describes (a base config and axes over any setting, or a "
        "list of trials) into DIR: an image per trial, manifest.jsonl, and sheet.png labelled by the axis "
        "values. Running it again skips finished trials.",
    )
    p.add_argument("sweep", metavar="SWEEP.toml")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--content", metavar="IMAGE", help="instead of the file's content image")
    p.add_argument("--style", metavar="IMAGE", help="instead of the file's style image")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_parallel(p)
    args = p.parse_args(argv)
    from .workflows import load_sweep, sweep

    spec = load_sweep(args.sweep, args.content, args.style)
    size = max((int(t.get("size", spec.base.get("size", 512))) for t in spec.trials), default=512)
    return _batch(
        args.output,
        size,
        len(spec.trials),
        lambda: sweep(spec, args.output, workers=args.workers, ray=args.ray, progress=not args.quiet),
        "manifest.jsonl",
    )


def _tune(argv: list[str]) -> int:
    p = Parser(
        prog="nstyle tune",
        description="Search settings for CONTENT in the manner of STYLE within a time budget: small and "
        "short first, the best promoted to larger sizes and more iterations, each result scored by a "
        "trained network other than the one it was optimised with. Writes DIR/best.toml (use it with "
        "--config), best.png (the pick at --size), report.json and report.csv (every trial, ranked) and "
        "front.png (the Pareto front). The same command again continues a stopped search.",
    )
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("style", metavar="STYLE")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--preset", default="default", help=f"where the search starts: {', '.join(preset_names())}")
    p.add_argument("--config", metavar="FILE.toml", help="settings layered on --preset, where the search starts")
    p.add_argument("--space", metavar="SPACE.toml", help="the settings to search (default: the backbone's own)")
    p.add_argument("--budget", type=float, default=600.0, metavar="SECONDS", help="for the search (default 600)")
    p.add_argument("--size", type=int, metavar="PX", help="the pick's size (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="the candidates drawn and every trial's seed (default 0)")
    p.add_argument("--backend", metavar="NAME", help="the Keras backend (default: KERAS_BACKEND, else tensorflow)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    add_parallel(p)
    args = p.parse_args(argv)
    select(args.backend)
    from .checkpoints import JOB_CHECKPOINT
    from .workflows.tune import tune

    try:
        done = tune(
            args.content, args.style, args.output, preset=args.preset, config=args.config, space=args.space,
            budget=args.budget,
            size=args.size, workers=args.workers, ray=args.ray, progress=not args.quiet, seed=args.seed,
        )  # fmt: skip
    except Interrupted as e:
        say(
            f"nstyle: stopped by {signal.Signals(e.signum).name}; what was scored is kept in {args.output}: "
            f"the same command again (or `nstyle resume {Path(args.output) / 'trials' / JOB_CHECKPOINT}`) continues it"
        )
        return 128 + e.signum
    say(
        f"tune: searched {done.search_seconds:.0f} s (budget {args.budget:g} s), rendered {done.render_seconds:.0f} s; "
        f"pick {done.pick}: wrote {done.out_dir / 'best.toml'}, best.png, report.json, report.csv, front.png"
    )
    return 0


def _batch(folder: str, size: int, images: int, run: Callable[[], Path], beside: str = "") -> int:
    """Probe, grid or sweep, after the one preflight every command has (room for ``images`` results of
    ``size`` px and their sheet, and the claim on ``folder``): the sheet it wrote, or, stopped by a
    signal, what it kept for the same command to reuse."""
    from .checkpoints import JOB_CHECKPOINT
    from .io import preflight

    try:
        with preflight(folder, needed=(images * 2 + 1) * size**2 * 3 + 2**20, folder=True):
            sheet = run()
    except Interrupted as e:
        kept = sum(1 for p in Path(folder).glob("*.png") if p.name not in ("grid.png", "sheet.png"))
        what = "1 finished image is" if kept == 1 else f"{kept} finished images are"
        say(
            f"nstyle: stopped by {signal.Signals(e.signum).name}; {what} kept in {folder}: "
            f"`nstyle resume {Path(folder) / JOB_CHECKPOINT}`, or the same command again, continues it"
        )
        return 128 + e.signum
    say(f"wrote {sheet}" + (f" and {sheet.with_name(beside)}" if beside else ""))
    return 0


def _ui(argv: list[str]) -> int:
    p = Parser(prog="nstyle ui", description="Serve the browser app (Gradio) until Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (needs internet)")
    p.add_argument(
        "--backend", metavar="NAME", help="the Keras backend its runs use (default: KERAS_BACKEND, else tensorflow)"
    )
    args = p.parse_args(argv)
    select(args.backend)
    try:
        from .ui import launch
    except ImportError:
        raise NStyleError("the UI needs Gradio: pip install -e '.[ui]'") from None
    say(f"nstyle ui on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(args.host, args.port, args.share)  # Gradio closes its server on our Interrupted and returns
    signum = received()
    if signum:
        say(f"nstyle: stopped by {signal.Signals(signum).name}")
    return 128 + signum if signum else 0


if __name__ == "__main__":
    sys.exit(main())
