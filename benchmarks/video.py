"""Video: does nstyle video flicker less than stylizing each frame, and is it faster?

The clip is examples/video/pan.mp4: no freely licensed real clip installs offline, so it is a
camera path rendered from two bundled photos (``--make-clip`` writes it again): the camera pans
across and zooms into coffee.jpg while a disc cut from chelsea.jpg (the cat) moves across the
frame, so there is camera motion, scaling and an object with occlusion edges.

Compared, with one preset (lite0: trained weights offline):

- per frame: every frame stylized on its own with the preset's full iterations;
- nstyle video: the first frame so, later frames warm-started from the warped previous
  result with the temporal term, at a share of the iterations (several shares and temporal
  weights, to choose the defaults).

Temporal error: mean absolute difference (0..255) between stylized frame t and stylized frame
t-1 warped by the content's flow, on pixels the flow can be trusted at
(:func:`nstyle.video.flow.temporal_error`). Style loss: the preset's style term of each frame,
by one float32 ruler, averaged, relative to per-frame stylization's (does less flicker cost
style?). Targets: temporal error <= 1/2 of per-frame, seconds per frame <= 1/3.

    python benchmarks/video.py [--size 192] [--iterations 100]

Writes docs/video.gif (per frame above, nstyle video below). Ends with
``temporal_error_ratio: X`` (default settings over per-frame).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import save_results  # noqa: E402
from nstyle.backbones.precision import host_cpu  # noqa: E402

CLIP = ROOT / "examples/video/pan.mp4"
STYLE = ROOT / "examples/images/style/starry_night.jpg"


def make_clip(path: Path, frames: int = 24, size: tuple[int, int] = (320, 214)) -> None:
    """Render the camera path: pan and zoom over coffee.jpg, the cat's face crossing in front."""
    from nstyle.video.frames import write_video

    scene = Image.open(ROOT / "examples/images/content/coffee.jpg").convert("RGB")
    cat = (
        Image.open(ROOT / "examples/images/content/chelsea.jpg")
        .convert("RGB")
        .crop((150, 20, 330, 200))
        .resize((90, 90))
    )
    disc = Image.new("L", cat.size, 0)
    ImageDraw.Draw(disc).ellipse((0, 0, *cat.size), fill=255)
    out = []
    for t in range(frames):
        zoom = 1 + 0.25 * t / frames
        width, height = scene.width * 0.7 / zoom, scene.height * 0.7 / zoom
        left, top = 30 + 60 * t / frames, 20 + 25 * t / frames
        view = scene.crop((left, top, left + width, top + height)).resize(size, Image.Resampling.LANCZOS)
        view.paste(cat, (int(-60 + 300 * t / frames), int(70 + 20 * np.sin(t / 4))), disc)
        out.append(np.asarray(view))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, path, Fraction(12))


def style_losses(frames: list[np.ndarray], content: list[np.ndarray], cfg) -> float:
    """Mean style term of the stylized frames, each with its own content frame, in float32."""
    from nstyle.backbones import FeatureExtractor, get_backbone, load_model
    from nstyle.losses import objective, tensor

    backbone = get_backbone(cfg.backbone)
    extractor = FeatureExtractor(
        backbone, load_model(cfg.backbone, cfg.weights), [s.name for s in (*cfg.content_layers, *cfg.style_layers)]
    )
    from nstyle.io import fit

    style = fit(Image.open(STYLE).convert("RGB"), max(content[0].shape[:2]))
    loss = objective(cfg, extractor, Image.fromarray(content[0]), [style])
    values = []
    for frame, photo in zip(frames, content):
        loss.set_content(tensor(backbone.preprocessing.forward(photo.astype(np.float32))[None]))
        values.append(float(loss(tensor(backbone.preprocessing.forward(frame.astype(np.float32))[None]))["style"]))
    return float(np.mean(values))


def row(method: str, iterations: int, weight: float | None, error: float, seconds: float, style: float) -> dict:
    return {
        "method": method,
        "later frames' iterations": iterations,
        "temporal weight": weight,
        "temporal error": round(error, 2),
        "s / frame": round(seconds, 2),
        "style loss vs per frame": round(style, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--make-clip", action="store_true", help="render examples/video/pan.mp4 again")
    parser.add_argument("--preset", default="lite0")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("-o", "--output", default=str(ROOT / "docs/video.gif"))
    args = parser.parse_args()
    if args.make_clip or not CLIP.exists():
        make_clip(CLIP)
    from nstyle.api import stylize
    from nstyle.config import resolve
    from nstyle.video import stylize_video
    from nstyle.video.flow import temporal_error
    from nstyle.video.frames import read_clip
    from nstyle.video.run import FRAME_SHARE, TEMPORAL_WEIGHT

    cfg = resolve(args.preset, None, {"size": args.size, "iterations": args.iterations, "seed": 0})
    content = read_clip(CLIP, args.size, args.frames).frames
    print(
        f"CPU: {host_cpu().describe()}; {args.preset}, {len(content)} frames of {content[0].shape[1]}x{content[0].shape[0]}, "
        f"first frame {args.iterations} iterations",
        flush=True,
    )
    start = time.perf_counter()
    single = [np.asarray(stylize(Image.fromarray(f), STYLE, config=cfg).image) for f in content]
    single_seconds = (time.perf_counter() - start) / len(content)
    single_error = temporal_error(single, content)
    single_style = style_losses(single, content, cfg)
    table = [row("per frame", args.iterations, None, single_error, single_seconds, 1.0)]
    print(table[0], flush=True)
    default = round(args.iterations * FRAME_SHARE)
    folder = Path(tempfile.mkdtemp(prefix="nstyle-video-"))
    runs = {}
    for share, weight in (
        (default, TEMPORAL_WEIGHT),
        (default, 0.0),
        (default, 1.0),
        (round(args.iterations * 0.1), TEMPORAL_WEIGHT),
        (round(args.iterations * 0.3), TEMPORAL_WEIGHT),
    ):
        out = folder / f"v{share}_w{round(weight * 10)}"  # a folder of PNG frames: judged without a codec's losses
        start = time.perf_counter()
        stylize_video(
            CLIP, STYLE, out, config=cfg, frame_iterations=share, temporal_weight=weight, max_frames=args.frames
        )
        seconds = (time.perf_counter() - start) / len(content)
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("frame_*.png"))]
        error = temporal_error(frames, content)
        style = style_losses(frames, content, cfg) / single_style
        runs[(share, weight)] = (error, seconds, frames)
        table.append(row("nstyle video", share, weight, error, seconds, style))
        print(table[-1], flush=True)
    error, seconds, frames = runs[(default, TEMPORAL_WEIGHT)]
    print(
        f"\ndefaults ({default} iterations, weight {TEMPORAL_WEIGHT:g}): temporal error {error / single_error:.2f} x per-frame's "
        f"(target <= 0.5), {seconds / single_seconds:.2f} x its seconds per frame (target <= 0.33)"
    )
    gif = [Image.fromarray(np.concatenate([a, b], axis=0)) for a, b in zip(single, frames)]
    gif[0].save(args.output, save_all=True, append_images=gif[1:], duration=1000 // 12, loop=0)
    print(f"wrote {args.output}")
    summary = f"temporal_error_ratio: {error / single_error:.3f}"
    title = (
        f"Video, {args.preset}, {len(content)} frames of {content[0].shape[1]}x{content[0].shape[0]}, "
        f"first frame {args.iterations} iterations"
    )
    save_results("video", title, table, summary, seconds_ratio=round(seconds / single_seconds, 3))
    print(summary)


if __name__ == "__main__":
    main()
