"""The same look at every size: a large picture against the small one, with and without --look-size.

lite0 stylizes each bundled pair (the cat in The Starry Night, the rocket in The Scream, the
astronaut in the shipwreck) at a reference size and at three times it: once in one scale (the
look changes: the network's receptive fields are fixed in pixels, so strokes shrink against the
picture), once with ``--look-size`` at the reference size (coarse to fine
from it). Each large result is downsampled to the reference size and compared with the
reference result by a judge that did not make them (VGG16-HED, benchmarks/quality.py): its
style distance with the reference result as the style, relative to the photo's. Lower means
the large picture looks more like the small one. The figure shows the first pair.

    python benchmarks/look_size.py [--size 384] [--factor 3] [--iterations 100] [--figure docs/look_size.png]

Ends with ``size distance: X -> Y`` (without, then with the look size; the mean over the pairs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import ROOT, save_results
from PIL import Image
from quality import IMAGES, judges

import nstyle
from nstyle.backbones import precision
from nstyle.backends import threads
from nstyle.io import fit, load_image
from nstyle.sheets import contact_sheet

PAIRS = [("chelsea", "starry_night"), ("rocket", "the_scream"), ("astronaut", "shipwreck")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384, help="the reference size")
    parser.add_argument("--factor", type=int, default=3, help="the large size over the reference")
    parser.add_argument("--iterations", type=int, default=100, help="per scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=str(ROOT / "docs" / "look_size.png"))
    args = parser.parse_args()
    print(precision.device_line(precision.resolve("float32", "lbfgs"), threads()))
    judge = next(j for j in judges() if j.name == "VGG16-HED")
    large = args.size * args.factor
    common = {"preset": "lite0", "seed": args.seed, "iterations": args.iterations}
    runs = {
        f"{args.size} px": {"size": args.size, "look_size": 0},
        f"{large} px, no look size": {"size": large, "look_size": 0},
        f"{large} px, --look-size {args.size}": {"size": large, "look_size": args.size, "scale_factor": 2.0},
    }
    rows, without, with_look = [], [], []
    for number, (content_name, style_name) in enumerate(PAIRS):
        content, style = IMAGES / "content" / f"{content_name}.jpg", IMAGES / "style" / f"{style_name}.jpg"
        pair = f"{content_name} x {style_name}"
        results = {}
        for name, options in runs.items():
            start = time.perf_counter()
            results[name] = nstyle.stylize(content, style, **common, **options)
            seconds = time.perf_counter() - start
            rows.append({"pair": pair, "run": name, "scales": results[name].config.scale_sizes, "s": round(seconds, 1)})
            print(f"  {pair}, {name}: {seconds:.0f} s", flush=True)
        reference = results[f"{args.size} px"].image
        photo = fit(load_image(content), args.size)
        rows[-3]["size distance (VGG16-HED)"] = 0.0
        for row in rows[-2:]:
            down = results[row["run"]].image.resize(reference.size, Image.Resampling.LANCZOS)
            row["size distance (VGG16-HED)"] = round(judge.scores(down, photo, reference)[0], 4)
        without.append(rows[-2]["size distance (VGG16-HED)"])
        with_look.append(rows[-1]["size distance (VGG16-HED)"])
        print(f"  {pair}: size distance {without[-1]:.3f} -> {with_look[-1]:.3f}", flush=True)
        if number == 0:
            tiles = [(results[name].image.resize(reference.size, Image.Resampling.LANCZOS), name) for name in runs]
            contact_sheet(tiles, columns=3, tile_size=max(reference.size)).save(Path(args.figure))
    title = (
        f"Look at {large} px against {args.size} px: style distance of the downsampled large result (lower: same look)"
    )
    save_results("look_size", title, rows, reference=args.size, large=large, iterations=args.iterations)
    print(f"size distance: {statistics.mean(without):.3f} -> {statistics.mean(with_look):.3f}")


if __name__ == "__main__":
    main()
