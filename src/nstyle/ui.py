"""``nstyle ui``: a browser app (Gradio) to stylize and probe, watching the image evolve.

The optimisation runs in a worker thread and reports through a queue; the event handler is a
generator that streams the current image, the loss curve and a status line to the page. Stop
sets a per-session flag that makes the run end through :class:`~nstyle.optimize.Stop`, which
keeps the best image so far, and the result is offered for download with its run record.

Offline by design: analytics off, system fonts only (no web fonts), no share link unless asked;
one job at a time, others queued.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from .backbones import REGISTRY  # noqa: E402
from .backbones.precision import PRECISIONS  # noqa: E402
from .config import preset_names, resolve  # noqa: E402
from .errors import NStyleError  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"
MAX_UPLOAD = "25mb"
_stop_flags: dict[str, threading.Event] = {}
STOPPED = "the Stop button"  # who stopped the run, in its outcome: "stopped by the Stop button"


def sample_pairs() -> list[list[str]]:
    """Bundled content/style pairs for the examples row (empty when installed without the repo)."""
    pairs = [("chelsea", "starry_night"), ("rocket", "the_scream"), ("coffee", "shipwreck")]
    found = [[str(SAMPLES / "content" / f"{c}.jpg"), str(SAMPLES / "style" / f"{s}.jpg")] for c, s in pairs]
    return [p for p in found if all(Path(f).is_file() for f in p)]


def _path(value: Any) -> str | None:
    """An upload's file path. Events skip Gradio's own image decoding (``preprocess=False``) so that a
    broken upload reaches nstyle's loader and gets its one-line message, not a Python exception."""
    if isinstance(value, dict):
        return value.get("path")
    return value or None


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


PRESETS_OWN = "(the preset's)"
WEIGHTS = [PRESETS_OWN, "imagenet", "hed", "random"]


def _chosen(value: str | None) -> str | None:
    """A dropdown's value as an override: None keeps the preset's (its backbone brings its layers)."""
    return None if value in (None, "", PRESETS_OWN) else value


IMAGE_SETTINGS = (
    "preset",
    "backbone",
    "weights",
    "size",
    "iterations",
    "style_weight",
    "content_weight",
    "swag",
    "scales",
    "precision",
    "max_memory",
    "style_loss",
    "mask",
    "tileable",
)
STYLE_LOSS_CHOICES = [
    PRESETS_OWN,
    "gram",
    "gram+histogram",
    "wasserstein",
    "wasserstein+histogram",
    "meanstd",
    "histogram",
]


def _stylize_events(
    content: str | None, style: str | None, page: dict[str, Any], request: gr.Request
) -> Iterator[tuple[Any, Any, str, Any]]:
    """Stream (image, loss table, status, download) while a stylization runs in a thread; ``page`` holds
    the page's settings by :data:`IMAGE_SETTINGS` name."""
    content, style = _path(content), _path(style)
    texture = page.get("texture", False)
    if not style or not (content or texture):
        raise gr.Error("Upload or pick a content image and a style image first.")
    from .api import stylize
    from .io import Canvas, load_image, texture_settings
    from .optimize import Stop
    from .regions import load_regions

    overrides = {
        "backbone": _chosen(page["backbone"]),
        "weights": _chosen(page["weights"]),
        "size": int(page["size"]),
        "iterations": int(page["iterations"]),
        "style_weight": page["style_weight"] or None,
        "content_weight": page["content_weight"] or None,
        "swag": page["swag"] or None,
        "scales": int(page["scales"]),
        "precision": page["precision"],
        "max_memory": page["max_memory"] or None,
        "style_loss": _chosen(page["style_loss"]),
        "mask": _path(page["mask"]),
        "tileable": "wrap" if page["tileable"] else None,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}  # unset: the preset's
    try:
        if texture:
            overrides = {**texture_settings(style, int(page["size"])), **overrides}
            content = Canvas(int(page["size"]), int(page["size"]))
        cfg = resolve(page["preset"], overrides=overrides)
        load_image(content, "content image")
        load_image(style, "style image")
        if cfg.mask is not None:
            load_regions(cfg.mask, (), 1, (), (8, 8))
    except NStyleError as e:
        raise gr.Error(str(e)) from None

    stop = _stop_flags.setdefault(_session(request), threading.Event())
    stop.clear()
    updates: queue.Queue = queue.Queue()

    def watch(p) -> None:
        if stop.is_set():
            raise Stop(STOPPED)
        if p.iteration == 1 or p.iteration % 5 == 0 or p.iteration == p.iterations or "tile" in p.stage:
            updates.put(("progress", p.iteration, p.iterations, dict(p.losses), p.image(), p.stage))

    def work() -> None:
        try:
            updates.put(("done", stylize(content, style, config=cfg, callbacks=[watch])))
        except NStyleError as e:
            updates.put(("error", str(e)))
        except Exception as e:  # shown in the page rather than lost in a thread
            updates.put(("error", f"{type(e).__name__}: {e}"))

    threading.Thread(target=work, daemon=True).start()
    try:
        yield from _stream(updates)
    finally:
        # Gradio closes this generator when the tab that started it goes away (or the run ends):
        # stop the run too, so a closed tab leaves no optimisation holding the CPU and its memory.
        stop.set()


def _stream(updates: queue.Queue) -> Iterator[tuple[Any, Any, str, Any]]:
    """The page updates for one run's queue of progress, error and result messages."""
    from .io import save_image

    history: list[dict[str, float]] = []
    yield None, None, "Loading the network and computing targets...", None
    while True:
        kind, *data = updates.get()
        if kind == "progress":
            iteration, total, losses, pixels, stage = data
            history.append({"iteration": iteration, "loss": losses["total"]})
            where = f" ({stage})" if stage else ""
            status = f"Iteration {iteration}/{total}{where}: total {losses['total']:.4g}, style {losses['style']:.4g}, content {losses['content']:.4g}"
            yield pixels, pd.DataFrame(history), status, None
        elif kind == "error":
            raise gr.Error(data[0])
        else:
            result = data[0]
            folder = Path(tempfile.mkdtemp(prefix="nstyle-ui-"))
            path = save_image(result.image, folder / "nstyle.png", metadata=result.metadata())
            words = result.outcome.describe()
            ended = words[0].upper() + words[1:] if result.outcome.early else "Done"
            status = (
                f"{ended} after {len(result.history)} iterations in {result.seconds:.1f} s "
                f"({result.precision}); best loss "
                f"{result.best_loss:.4g} at iteration {result.best_iteration}. The PNG carries its settings."
            )
            yield result.image, pd.DataFrame(history), status, [str(path), str(path.with_suffix(".json"))]
            return


def _stop(request: gr.Request) -> None:
    """Ask this session's run to stop; the run itself reports that it stopped, so that no late
    reply from this click can overwrite the run's final status."""
    _stop_flags.setdefault(_session(request), threading.Event()).set()


def _probe_events(
    content: str | None,
    style: str | None,
    layers: str,
    blocks: bool,
    preset: str,
    weights: str,
    size: float,
    iterations: float,
):
    """Run ``nstyle probe`` into a temporary folder and show its sheet."""
    content, style = _path(content), _path(style)
    if not content or not style:
        raise gr.Error("Upload or pick a content image and a style image first.")
    from .workflows import probe

    folder = Path(tempfile.mkdtemp(prefix="nstyle-probe-"))
    try:
        cfg = resolve(preset, overrides={"weights": _chosen(weights), "size": int(size), "iterations": int(iterations)})
        sheet = probe(
            content, style, cfg, folder, layers=layers.split(), blocks=blocks and not layers.strip(), progress=False
        )
    except NStyleError as e:
        raise gr.Error(str(e)) from None
    return str(sheet), [str(sheet), str(folder / "summary.csv")]


def _video_events(
    video: Any,
    style: Any,
    preset: str,
    size: float,
    iterations: float,
    frame_iterations: float,
    temporal_weight: float,
    max_frames: float,
    mask: Any,
    request: gr.Request,
) -> Iterator[tuple[Any, Any, str, Any]]:
    """Stream (latest frame, video, status, downloads) while :func:`nstyle.video.stylize_video` runs in a thread.

    Each finished frame arrives as an event and is shown; Stop ends the run through a callback's
    Stop, keeping the finished frames (as Ctrl-C does on the command line), and a closed tab
    stops it the same way.
    """
    video, style, mask = _path(video), _path(style), _path(mask)
    if not video or not style:
        raise gr.Error("Upload a short clip and a style image first.")
    from .optimize import Stop
    from .video import stylize_video

    folder = Path(tempfile.mkdtemp(prefix="nstyle-video-"))
    out = folder / "nstyle.mp4"
    stop = _stop_flags.setdefault(f"video-{_session(request)}", threading.Event())
    stop.clear()
    updates: queue.Queue = queue.Queue()

    def watch(_progress: Any) -> None:
        if stop.is_set():
            raise Stop(STOPPED)

    def work() -> None:
        try:
            result = stylize_video(
                video,
                style,
                out,
                preset=preset,
                size=int(size),
                iterations=int(iterations),
                frame_iterations=int(frame_iterations),
                temporal_weight=float(temporal_weight),
                max_frames=int(max_frames) or None,
                mask=mask,
                callbacks=[watch],
                on_event=updates.put,
            )
            updates.put(result)
        except NStyleError as e:
            updates.put(e)
        except Exception as e:  # shown in the page rather than lost in a thread
            updates.put(RuntimeError(f"{type(e).__name__}: {e}"))

    threading.Thread(target=work, daemon=True).start()
    try:
        yield from _video_stream(updates, out)
    finally:
        stop.set()  # the tab went away or the run ended: nothing keeps running


def _video_stream(updates: queue.Queue, out: Path) -> Iterator[tuple[Any, Any, str, Any]]:
    """The page updates for one video run's queue: its events, then its result or error."""
    from .events import FrameFinished
    from .video import VideoResult

    shown, latest = 0, None
    yield None, None, "Reading the clip and loading the network...", None
    while True:
        item = updates.get()
        if isinstance(item, FrameFinished):
            shown, latest = shown + 1, item.path
            yield latest, None, f"{_frames(shown)} done...", None
        elif isinstance(item, Exception):
            raise gr.Error(str(item))
        elif not isinstance(item, VideoResult):  # the frames' iterations and steps: the frame count says enough
            continue
        elif item.outcome.halts:
            yield latest, None, f"Stopped: {_frames(shown)} kept in {item.work}.", None  # the last one stays shown
            return
        else:
            done = f"Done: {out.name}, its frames stylized one after another, held steady by optical flow."
            yield None, str(out), done, [str(out)]
            return


def _frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


def _video_stop(request: gr.Request) -> None:
    _stop_flags.setdefault(f"video-{_session(request)}", threading.Event()).set()


def build_app() -> gr.Blocks:
    """The app: Stylize, Video and Probe tabs."""
    presets = preset_names()
    with gr.Blocks(title="nstyle") as app:
        gr.Markdown("# nstyle\nNeural style transfer on Keras backbones. Pick a photo and a painting, press Run.")
        with gr.Tab("Stylize"):
            _stylize_tab(presets)
        with gr.Tab("Texture"):
            _texture_tab(presets)
        with gr.Tab("Video"):
            _video_tab(presets)
        with gr.Tab("Probe layers"):
            _probe_tab(presets)
    return app.queue(default_concurrency_limit=1, max_size=20)


def _stylize_tab(presets: list[str]) -> None:
    """Photo and painting in, the image evolving live, Stop keeping the best so far."""
    with gr.Row():
        content = gr.Image(type="filepath", label="Content", elem_id="content", sources=["upload"])
        style = gr.Image(type="filepath", label="Style", elem_id="style", sources=["upload"])
        mask = gr.Image(
            type="filepath",
            label="Mask (optional): white is styled, black keeps the photo",
            elem_id="mask",
            sources=["upload"],
            image_mode="L",
        )
        output = gr.Image(label="Result (live)", elem_id="result", interactive=False)
    if sample_pairs():
        gr.Examples(sample_pairs(), inputs=[content, style], label="Bundled samples")
    with gr.Row():
        preset = gr.Dropdown(presets, value="lite0" if "lite0" in presets else "default", label="Preset")
        backbone = gr.Dropdown([PRESETS_OWN, *REGISTRY], value=PRESETS_OWN, label="Backbone", elem_id="backbone")
        weights = gr.Dropdown(WEIGHTS, value=PRESETS_OWN, label="Weights", elem_id="weights", allow_custom_value=True)
    with gr.Row():
        size = gr.Slider(32, 4096, value=384, step=16, label="Size (longer side, px)", elem_id="size")
        iterations = gr.Slider(1, 1000, value=150, step=1, label="Iterations", elem_id="iterations")
        scales = gr.Slider(1, 4, value=1, step=1, label="Scales (coarse to fine)")
    with gr.Row():
        style_weight = gr.Number(value=0, label="Style weight (0: the preset's)")
        content_weight = gr.Number(value=0, label="Content weight (0: the preset's)")
        swag = gr.Number(value=0, label="SWAG temperature (0: the preset's)")
        precision = gr.Dropdown(
            list(PRECISIONS), value="auto", label="Precision (auto: fastest for this machine)", elem_id="precision"
        )
        max_memory = gr.Number(
            value=0, label="Memory budget, GB (0: 80% of free; larger sizes run in tiles)", elem_id="max_memory"
        )
        style_loss = gr.Dropdown(
            STYLE_LOSS_CHOICES,
            value=PRESETS_OWN,
            label="Style loss (+histogram: colours that hold)",
            elem_id="style_loss",
        )
        tileable = gr.Checkbox(value=False, label="Tileable (wraps, tiles without a seam)", elem_id="tileable")
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="run")
        stop = gr.Button("Stop (keep best so far)", elem_id="stop")
    status = gr.Markdown(elem_id="status")
    plot = gr.LinePlot(x="iteration", y="loss", title="Total loss", height=220)
    download = gr.File(label="Download result and its settings", elem_id="download")
    fields = dict(
        zip(
            IMAGE_SETTINGS,
            (
                preset,
                backbone,
                weights,
                size,
                iterations,
                style_weight,
                content_weight,
                swag,
                scales,
                precision,
                max_memory,
                style_loss,
                mask,
                tileable,
            ),
        )
    )

    def start(values: dict[Any, Any], request: gr.Request) -> Iterator[tuple[Any, Any, str, Any]]:
        """Gradio's values by component (a set of inputs), passed on by name."""
        yield from _stylize_events(values[content], values[style], {k: values[c] for k, c in fields.items()}, request)

    run.click(start, {content, style, *fields.values()}, [output, plot, status, download], preprocess=False)
    stop.click(_stop, None, None, queue=False)
    preset.change(lambda p: resolve(p).backbone, preset, backbone, queue=False)


def _texture_tab(presets: list[str]) -> None:
    """A painting in, a texture of it evolving live (no photo), Stop keeping the best so far."""
    gr.Markdown("A texture from the painting alone: its strokes at the painting's own size, from noise.")
    with gr.Row():
        t_style = gr.Image(type="filepath", label="Style", elem_id="t_style", sources=["upload"])
        t_output = gr.Image(label="Texture (live)", elem_id="t_result", interactive=False)
    with gr.Row():
        t_preset = gr.Dropdown(presets, value="lite0" if "lite0" in presets else "default", label="Preset")
        t_size = gr.Slider(32, 4096, value=384, step=16, label="Size (px, square)", elem_id="t_size")
        t_iterations = gr.Slider(1, 1000, value=150, step=1, label="Iterations", elem_id="t_iterations")
        t_tileable = gr.Checkbox(value=True, label="Tileable (wraps)", elem_id="t_tileable")
    with gr.Row():
        t_run = gr.Button("Run", variant="primary", elem_id="t_run")
        t_stop = gr.Button("Stop (keep best so far)")
    t_status = gr.Markdown(elem_id="t_status")
    t_plot = gr.LinePlot(x="iteration", y="loss", title="Total loss", height=220)
    t_download = gr.File(label="Download texture and its settings", elem_id="t_download")
    page = {name: None for name in IMAGE_SETTINGS} | {"scales": 1, "precision": "auto", "texture": True}

    def start(style, preset, size, iterations, tileable, request: gr.Request):  # noqa: ANN001
        values = {**page, "preset": preset, "size": size, "iterations": iterations, "tileable": tileable}
        yield from _stylize_events(None, style, values, request)

    t_run.click(
        start,
        [t_style, t_preset, t_size, t_iterations, t_tileable],
        [t_output, t_plot, t_status, t_download],
        preprocess=False,
    )
    t_stop.click(_stop, None, None, queue=False)


def _video_tab(presets: list[str]) -> None:
    """A clip in, frames shown as they finish, Stop keeping the finished ones."""
    gr.Markdown(
        "A short clip, frame by frame: each frame starts from the previous one warped by optical flow "
        "(Ruder et al. 2016), so it does not flicker. Frames appear as they finish."
    )
    with gr.Row():
        v_clip = gr.Video(label="Clip", sources=["upload"], elem_id="v_clip")
        v_style = gr.Image(type="filepath", label="Style", sources=["upload"], elem_id="v_style")
        v_mask = gr.Image(
            type="filepath",
            label="Mask (optional, the whole clip)",
            sources=["upload"],
            image_mode="L",
            elem_id="v_mask",
        )
        v_latest = gr.Image(label="Latest frame", interactive=False, elem_id="v_latest")
    with gr.Row():
        v_preset = gr.Dropdown(presets, value="lite0" if "lite0" in presets else "default", label="Preset")
        v_size = gr.Slider(32, 768, value=256, step=16, label="Size (longer side, px)")
        v_iterations = gr.Slider(1, 500, value=100, step=1, label="Iterations (first frame)")
        v_frame_iterations = gr.Slider(1, 200, value=20, step=1, label="Iterations (later frames)")
        v_temporal = gr.Number(value=0.3, label="Temporal weight (0: off)")
        v_max = gr.Number(value=48, label="Frames (0: all, up to 1000)")
    with gr.Row():
        v_run = gr.Button("Run", variant="primary", elem_id="v_run")
        v_stop = gr.Button("Stop (keep finished frames)")
    v_status = gr.Markdown(elem_id="v_status")
    v_result = gr.Video(label="Result", interactive=False)
    v_files = gr.File(label="Download")
    v_run.click(
        _video_events,
        [v_clip, v_style, v_preset, v_size, v_iterations, v_frame_iterations, v_temporal, v_max, v_mask],
        [v_latest, v_result, v_status, v_files],
        preprocess=False,
    )
    v_stop.click(_video_stop, None, None, queue=False)


def _probe_tab(presets: list[str]) -> None:
    """One stylization per candidate layer, on one sheet."""
    gr.Markdown("One stylization per layer, that layer alone as the style layer, on one labelled sheet.")
    with gr.Row():
        p_content = gr.Image(type="filepath", label="Content", sources=["upload"])
        p_style = gr.Image(type="filepath", label="Style", sources=["upload"])
    if sample_pairs():
        gr.Examples(sample_pairs(), inputs=[p_content, p_style], label="Bundled samples")
    with gr.Row():
        p_layers = gr.Textbox(label="Layers (space separated; empty + blocks: every block output)")
        p_blocks = gr.Checkbox(value=True, label="Every block output when no layers are given")
    with gr.Row():
        p_preset = gr.Dropdown(presets, value="lite0" if "lite0" in presets else "default", label="Preset")
        p_weights = gr.Dropdown(WEIGHTS, value=PRESETS_OWN, label="Weights", allow_custom_value=True)
        p_size = gr.Slider(32, 512, value=128, step=16, label="Size")
        p_iterations = gr.Slider(1, 500, value=50, step=1, label="Iterations")
    p_run = gr.Button("Probe", variant="primary")
    p_sheet = gr.Image(label="Contact sheet", interactive=False)
    p_files = gr.File(label="Sheet and summary.csv")
    p_run.click(
        _probe_events,
        [p_content, p_style, p_layers, p_blocks, p_preset, p_weights, p_size, p_iterations],
        [p_sheet, p_files],
        preprocess=False,
    )


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """Serve the app until interrupted."""
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    build_app().launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_UPLOAD,
        theme=theme,
        show_error=True,
        footer_links=[],
        ssr_mode=False,
    )
