"""Print-size images within a memory budget: peak RSS, wall time and seams, measured.

Each run is ``nstyle`` in its own process, watched every half second with psutil (its
resident memory, workers included: measured, not estimated). The runs:

1. 4096 px and 8192 px (longer side) with ``--max-memory 4``: coarse scales whole, the
   large ones in tiles. Few iterations at the top scales (``--scale-iterations``, printed) so
   that 8192 px (about 45 MP) takes tens of minutes on two cores, not a day.
2. 2048 px tiled (``--max-memory 4``) against the same run untiled (it fits in 24 GB): style
   and content loss of both results, measured by one float32 ruler at 2048 px.
3. The 2048 px tiled scale with ``--workers 1`` and ``--workers 2`` (same tiles).

Seam score: mean absolute gradient of the result on the tile seams of its top scale (the
cross-fades and tile edges of both passes, :func:`nstyle.plan.seam_mask`) divided by the mean
absolute gradient elsewhere; 1.0 is invisible, below 1 blurred seams, above 1 visible edges.
Writes docs/print.png: the 8192 px result small, beside a 1:1 crop across seams.

    python benchmarks/print_size.py [--preset lite0] [--sizes 4096 8192] [--parts sizes compare workers]

Each part can run on its own (``--parts``), so a long 8192 px run can be left to finish while
the others are measured.

Ends with ``worst_seam_deviation: X`` (the largest |seam score - 1|).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import CONTENT, STYLE, save_results  # noqa: E402
from nstyle.backbones.precision import host_cpu  # noqa: E402

Image.MAX_IMAGE_PIXELS = 16384**2


def run(args: list[str], output: Path) -> dict:
    """``nstyle CONTENT STYLE -o output args`` in a child process; its peak RSS (tree) and wall time."""
    command = [sys.executable, "-m", "nstyle", str(CONTENT), str(STYLE), "-o", str(output), "--quiet", *args]
    start = time.perf_counter()
    process = psutil.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [process, *process.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, err = process.communicate()
    done.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"nstyle failed ({process.returncode}): {err.strip()[-2000:]}")
    record = json.loads(output.with_suffix(".json").read_text())
    return {"seconds": time.perf_counter() - start, "peak": peak, "record": record, "output": output}


def top_step(record: dict):
    from nstyle.plan import Step

    s = record["result"]["memory"]["steps"][-1]
    return Step(
        len(record["result"]["memory"]["steps"]), s["height"], s["width"], s["iterations"], 0, s["tile"], s["overlap"]
    )


def seam_score(image: np.ndarray, step) -> float:
    """Mean |gradient| on the top scale's seams (both passes) over the mean |gradient| elsewhere."""
    from nstyle.plan import seam_mask

    x = image.astype(np.float32)
    gradient = np.zeros(x.shape[:2], np.float32)
    gradient[:, 1:] += np.abs(np.diff(x, axis=1)).mean(axis=-1)
    gradient[1:, :] += np.abs(np.diff(x, axis=0)).mean(axis=-1)
    mask = np.zeros(x.shape[:2], bool)
    for p in range(len(step.passes)):
        mask |= seam_mask(step, p)
    return float(gradient[mask].mean() / gradient[~mask].mean())


def losses_at(image_path: Path, record: dict) -> dict[str, float]:
    from benchmarks.common import Float32Loss
    from nstyle.config import Config

    cfg = Config.from_dict(record["config"])
    return Float32Loss(cfg)(Image.open(image_path).convert("RGB"))


def sheet(path: Path, step, out: Path) -> None:
    """The whole image small, beside a 1:1 crop centred on a seam crossing of the top scale."""
    image = Image.open(path).convert("RGB")
    tiles = step.tiles(len(step.passes) - 1)
    later = max(tiles, key=lambda t: (t.group, -abs(t.top - step.height / 2) - abs(t.left - step.width / 2)))
    cy, cx = later.top + step.overlap // 2, later.left + step.overlap // 2  # a corner where four tiles fade
    crop_size = 768
    box = (max(0, cx - crop_size // 2), max(0, cy - crop_size // 2))
    box = (*box, box[0] + crop_size, box[1] + crop_size)
    crop = image.crop(box)
    ticks = ImageDraw.Draw(crop)
    for t in tiles:  # red ticks on the crop's border where the last pass's tile edges cross it
        for x in (t.left, t.left + t.width):
            if box[0] < x < box[2]:
                ticks.line([(x - box[0], 0), (x - box[0], 12)], fill=(255, 0, 0), width=2)
        for y in (t.top, t.top + t.height):
            if box[1] < y < box[3]:
                ticks.line([(0, y - box[1]), (12, y - box[1])], fill=(255, 0, 0), width=2)
    small = image.resize((round(crop_size * image.width / image.height), crop_size), Image.Resampling.LANCZOS)
    scale = crop_size / image.height
    draw = ImageDraw.Draw(small)
    draw.rectangle([box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale], outline=(255, 0, 0), width=2)
    canvas = Image.new("RGB", (small.width + crop_size + 16, crop_size + 40), "white")
    canvas.paste(small, (0, 40))
    canvas.paste(crop, (small.width + 16, 40))
    text = ImageDraw.Draw(canvas)
    text.text((4, 8), f"{image.width}x{image.height}, whole (red: the crop)", fill="black")
    text.text(
        (small.width + 20, 8),
        f"1:1 crop across tile seams (tiles of {step.tile} px, overlap {step.overlap} px; red ticks: tile edges)",
        fill="black",
    )
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="lite0", help="lite0: trained weights offline (default)")
    parser.add_argument("--budget", type=float, default=4.0, help="--max-memory for the tiled runs, GB")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192], choices=[4096, 8192])
    parser.add_argument(
        "--parts", nargs="+", default=["sizes", "compare", "workers"], choices=["sizes", "compare", "workers"]
    )
    parser.add_argument("-o", "--output", default=str(ROOT / "docs/print.png"))
    args = parser.parse_args()
    print(f"CPU: {host_cpu().describe()}; preset {args.preset}; budget {args.budget:g} GB", flush=True)
    base = ["--preset", args.preset, "--scale-factor", "2", "--scales", "4", "--seed", "0"]
    runs = {
        4096: [*base, "--size", "4096", "--scale-iterations", "150", "40", "8", "2"],
        8192: [*base, "--size", "8192", "--scale-iterations", "40", "4", "2", "1"],
    }
    runs = {size: runs[size] for size in args.sizes} if "sizes" in args.parts else {}
    folder = Path(tempfile.mkdtemp(prefix="nstyle-print-"))
    worst = 0.0
    if runs:
        worst = sizes(runs, args, folder)
    if "compare" in args.parts:
        compare(base, args, folder)
    if "workers" in args.parts:
        workers(base, args, folder)
    if runs:
        print(f"worst_seam_deviation: {worst:.3f}")


def sizes(runs: dict[int, list[str]], args: argparse.Namespace, folder: Path) -> float:
    """The print-size runs: a table row each, and the sheet of the largest."""
    worst = 0.0
    results, rows = {}, []
    for size, options in runs.items():
        r = run([*options, "--max-memory", str(args.budget)], folder / f"print{size}.png")
        step = top_step(r["record"])
        score = seam_score(np.asarray(Image.open(r["output"]).convert("RGB")), step)
        worst = max(worst, abs(score - 1))
        results[size] = (r, step)
        plan = r["record"]["result"]["memory"]["plan"][-1].split(": ", 1)[1]
        rows.append(
            {
                "size": size,
                "iterations per scale": " ".join(options[options.index("--scale-iterations") + 1 :][:4]),
                "plan of the top scale": plan,
                "budget GB": args.budget,
                "peak RSS GB": round(r["peak"] / 2**30, 2),
                "wall s": round(r["seconds"]),
                "seam score": round(score, 3),
            }
        )
        print(rows[-1], flush=True)
    biggest = max(results)
    sheet(results[biggest][0]["output"], results[biggest][1], Path(args.output))
    print(f"wrote {args.output}", flush=True)
    title = f"Print sizes within {args.budget:g} GB, {args.preset}"
    save_results("print_size", title, rows, f"worst_seam_deviation: {worst:.3f}")
    return worst


def compare(base: list[str], args: argparse.Namespace, folder: Path) -> None:
    """2048 px tiled against untiled: losses by one ruler."""
    common = [*base[:2], *"--seed 0 --size 2048 --scales 3 --scale-factor 2 --scale-iterations 60 10 4".split()]
    tiled = run([*common, "--max-memory", str(args.budget)], folder / "tiled2048.png")
    whole = run(common, folder / "whole2048.png")
    a, b = losses_at(tiled["output"], tiled["record"]), losses_at(whole["output"], whole["record"])
    rows = [
        {
            "2048 px": name,
            "plan of the top scale": r["record"]["result"]["memory"]["plan"][-1].split(": ", 1)[1],
            "peak RSS GB": round(r["peak"] / 2**30, 2),
            "wall s": round(r["seconds"]),
            "style loss": losses["style"],
            "content loss": losses["content"],
        }
        for name, r, losses in (("tiled", tiled, a), ("untiled", whole, b))
    ]
    summary = f"tiled / untiled: style {a['style'] / b['style']:.3f}, content {a['content'] / b['content']:.3f}"
    title = f"2048 px tiled within {args.budget:g} GB against untiled, {args.preset}"
    save_results("print_size", title, rows, summary, name="print_size_compare")
    print(rows, summary, sep="\n", flush=True)


def workers(base: list[str], args: argparse.Namespace, folder: Path) -> None:
    """One tiled scale with 1 and 2 local workers."""
    parallel = [*base[:2], "--seed", "0", "--size", "2048", "--tile", "704", "--iterations", "2"]
    times = {}
    for count in (1, 2):
        r = run([*parallel, "--workers", str(count)], folder / f"workers{count}.png")
        times[count] = r["seconds"]
    step = top_step(r["record"])
    tiles = step.tiles(0)
    per_group = len(tiles) / len({t.group for t in tiles})
    rows = [{"workers": count, "wall s": round(seconds)} for count, seconds in times.items()]
    title = f"2048 px in {len(tiles)} tiles of 704 px, {args.preset}, 2 iterations, 1 and 2 local workers"
    speedup = f"speed-up: {times[1] / times[2]:.2f}"
    save_results("print_size", title, rows, speedup, name="print_size_workers", cores=os.cpu_count())
    print(
        f"\n2048 px in {len(tiles)} tiles of 704 px, {args.preset}, 2 iterations (one pass each way): 1 worker {times[1]:.0f} s, "
        f"2 workers {times[2]:.0f} s: speed-up {times[1] / times[2]:.2f} on {os.cpu_count()} cores "
        f"(each worker gets half the threads). On a cluster, a pass runs its {len({t.group for t in tiles})} groups "
        f"one after another and each group's ~{per_group:.0f} tiles at once: up to ~{per_group:.0f}x with that many "
        f"machines, less process start-up.",
        flush=True,
    )


if __name__ == "__main__":
    main()
