"""Seamless pictures: the seam metric and the judged style distance of each --tileable method.

Textures of The Starry Night (``nstyle texture``) and the cat photo in its style, lite0, whole
and in tiles (``--tile``), each without wrapping, with ``wrap`` (the network's input padded
circularly) and, for Adam runs, with ``roll`` (the image rolled by a random offset each step;
L-BFGS cannot follow a loss that changes each step). A tileable photo is made to wrap first
(nstyle.wrap.seamless). The seam metric (nstyle.wrap.seam_score): mean |difference across the wrap|
over mean |difference between neighbours|; about 1 wraps, ordinary pictures score 2.7-13. The
style distance is VGG16-HED's (a judge that did not make the image, benchmarks/quality.py),
relative to a grey picture for textures and to the photo for photos: lower is closer.

The seam metric of one picture is one column and one row against the rest: it varies from
picture to picture by several hundredths. A texture starts from noise, so each texture row is
the mean over ``--seeds`` noise seeds, with the worst beside it; a photo run starts from the
photo and does not depend on the seed.

    python benchmarks/tileable.py [--size 256] [--iterations 120] [--seeds 3]

Ends with ``seam: X -> Y`` (the lite0 texture without wrapping, then with ``wrap``).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import save_results
from PIL import Image
from quality import IMAGES, judges

import nstyle
from nstyle.backbones import precision
from nstyle.backends import threads
from nstyle.io import fit, load_image
from nstyle.wrap import seam_score

STYLE = IMAGES / "style" / "starry_night.jpg"
CONTENT = IMAGES / "content" / "chelsea.jpg"
#: (what, optimiser overrides, the methods tried)
RUNS = [
    ("texture, L-BFGS", {}, ("off", "wrap")),
    ("texture, Adam", {"optimizer": "adam", "lr": 4.0}, ("off", "wrap", "roll")),
    ("photo, L-BFGS", {}, ("off", "wrap")),
    ("texture, L-BFGS, tiles of 128 px", {"tile": 128}, ("off", "wrap")),
    ("photo, L-BFGS, tiles of 128 px", {"tile": 128}, ("off", "wrap")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds per texture row")
    args = parser.parse_args()
    print(precision.device_line(precision.resolve("float32", "lbfgs"), threads()))
    judge = next(j for j in judges() if j.name == "VGG16-HED")
    style = fit(load_image(STYLE), args.size)
    rows = []
    for what, extra, methods in RUNS:
        for method in methods:
            seeds = range(args.seeds) if what.startswith("texture") else range(1)
            runs = [_measure(what, method, extra, seed, args, judge, style) for seed in seeds]
            seams = [seam for seam, _, _ in runs]
            rows.append(
                {
                    "run": what,
                    "tileable": method,
                    "seam": round(statistics.mean(seams), 3),
                    "seam (worst)": round(max(seams), 3),
                    "seeds": len(runs),
                    "style distance (VGG16-HED)": round(statistics.mean(d for _, d, _ in runs), 4),
                    "s": round(statistics.mean(t for _, _, t in runs), 1),
                }
            )
            print("  " + "  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    title = "Seam metric (about 1: wraps) and judged style distance of each --tileable method, lite0"
    save_results("tileable", title, rows, size=args.size, iterations=args.iterations, seeds=args.seeds)
    off, wrap = (r["seam"] for r in rows[:2])
    print(f"seam: {off:.2f} -> {wrap:.2f}")


def _measure(what, method, extra, seed, args, judge, style):
    """One run: (seam metric, judged style distance, seconds)."""
    options = {"preset": "lite0", "seed": seed, "iterations": args.iterations, "tileable": method, **extra}
    start = time.perf_counter()
    if what.startswith("texture"):
        result = nstyle.texture(STYLE, size=args.size, **options)
        reference = Image.new("RGB", result.image.size, (128, 128, 128))
    else:
        result = nstyle.stylize(CONTENT, STYLE, size=args.size, **options)
        reference = fit(load_image(CONTENT), args.size)
    seconds = time.perf_counter() - start
    distance, _ = judge.scores(result.image, reference, style)
    return seam_score(result.image), distance, seconds


if __name__ == "__main__":
    main()
