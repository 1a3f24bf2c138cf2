"""The histogram term and masks, judged as benchmarks/quality.py judges (networks that did not make the image).

Histogram: each trained preset (lite0: Wasserstein; lite0 with its Gram weight; hed: Gram)
against itself with ``+histogram`` on the bundled pairs, same size, seed and iterations. Scores by the judge
that did not make the image (style and content distance, relative to the photo: lower is
closer; see quality.py), and the result's colour contrast: its luminance standard deviation
(RMS contrast) and its colourfulness (Hasler & Suesstrunk 2003), each over the painting's own,
so 1 is as contrasty and as colourful as the painting.

Masks: the rocket with The Scream in the sky only (examples/images/masks/rocket_sky.png),
lite0: how far the result is from the photo where the mask is black (it should be 0) and
inside the region, against the same run without the mask.

    python benchmarks/regions.py [--size 256] [--iterations 120] [--pairs 3] [--hed-pairs 1] [-o regions-out]

Writes ``histogram.png`` (Gram vs Gram + histogram side by side) and ends with
``histogram: style X -> Y, contrast A -> B`` (lite0 gram, mean over the pairs, judged by VGG16-HED).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from common import save_results
from PIL import Image
from quality import IMAGES, PAIRS, judges

from nstyle.api import stylize
from nstyle.backbones import precision
from nstyle.backends import threads
from nstyle.config import resolve
from nstyle.io import fit, load_image
from nstyle.regions import load_regions
from nstyle.sheets import contact_sheet

#: name -> (preset, its overrides, the backbone it optimises); each also runs with "+histogram"
PRESETS = {
    "lite0": ("lite0", {}, "efficientnet_lite0"),
    "lite0 gram": ("lite0", {"style_loss": "gram", "style_weight": 1e3}, "efficientnet_lite0"),  # its sweep's weight
    "hed": ("hed", {}, "vgg16"),
}
MASK = IMAGES / "masks" / "rocket_sky.png"


def contrast(image: Image.Image) -> float:
    """RMS contrast: the standard deviation of luminance, 0..1."""
    return float(np.asarray(image.convert("L"), np.float64).std() / 255)


def colourfulness(image: Image.Image) -> float:
    """Hasler & Suesstrunk's colourfulness of an RGB image (0..255 units)."""
    r, g, b = np.moveaxis(np.asarray(image.convert("RGB"), np.float64), -1, 0)
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def histogram_rows(args: argparse.Namespace, panel: list) -> tuple[list[dict], list]:
    rows, tiles = [], []
    for name, (preset, extra, maker) in PRESETS.items():
        pairs = PAIRS[: args.hed_pairs if preset == "hed" else args.pairs]
        alone = resolve(preset, overrides=extra).style_loss
        for content_name, style_name in pairs:
            content_path, style_path = (
                IMAGES / "content" / f"{content_name}.jpg",
                IMAGES / "style" / f"{style_name}.jpg",
            )
            content, style = (fit(load_image(p), args.size) for p in (content_path, style_path))
            for variant, loss in (("alone", alone), ("+ histogram", f"{alone}+histogram")):
                settings = {"size": args.size, "seed": args.seed, "iterations": args.iterations, "style_loss": loss}
                cfg = resolve(preset, overrides={**extra, **settings})
                start = time.perf_counter()
                result = stylize(content_path, style_path, config=cfg)
                seconds = time.perf_counter() - start
                row = {"preset": name, "style loss": cfg.style_loss, "pair": f"{content_name} x {style_name}"}
                for judge in panel:
                    if judge.backbone_name == maker:
                        continue
                    row["judge"] = judge.name
                    row["style"], row["content"] = (round(v, 4) for v in judge.scores(result.image, content, style))
                row["contrast vs painting"] = round(contrast(result.image) / contrast(style), 3)
                row["colourfulness vs painting"] = round(colourfulness(result.image) / colourfulness(style), 3)
                row["iterations"] = len(result.history)
                row["s"] = round(seconds, 1)
                rows.append(row)
                tiles.append(
                    (
                        result.image,
                        f"{name} {variant}\nstyle {row['style']:.3f}, contrast {row['contrast vs painting']:.2f}",
                    )
                )
                print("  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return rows, tiles


def mean_rows(rows: list[dict]) -> list[dict]:
    """Each (preset, style loss) averaged over its pairs."""
    out = []
    for key in dict.fromkeys((r["preset"], r["style loss"]) for r in rows):
        mine = [r for r in rows if (r["preset"], r["style loss"]) == key]
        row = {"preset": key[0], "style loss": key[1], "judge": mine[0]["judge"], "pairs": len(mine)}
        for measure in ("style", "content", "contrast vs painting", "colourfulness vs painting", "iterations", "s"):
            row[measure] = round(statistics.mean(r[measure] for r in mine), 3)
        out.append(row)
    return out


def mask_rows(args: argparse.Namespace) -> tuple[list[dict], list]:
    content_path, style_path = IMAGES / "content" / "rocket.jpg", IMAGES / "style" / "the_scream.jpg"
    rows, tiles = [], []
    for mask in (None, str(MASK)):
        cfg = resolve(
            "lite0", overrides={"size": args.size, "seed": args.seed, "iterations": args.iterations, "mask": mask}
        )
        result = stylize(content_path, style_path, config=cfg)
        photo = np.asarray(fit(load_image(content_path), args.size), np.float64)
        union = load_regions(str(MASK), (), 1, (), load_image(content_path).size).resized(result.image.size).union
        diff = np.abs(np.asarray(result.image, np.float64) - photo)
        rows.append(
            {
                "run": "lite0 + sky mask" if mask else "lite0, no mask",
                "where the mask is black: max |result - photo|": round(float(diff[union == 0].max()), 2),
                "mean there": round(float(diff[union == 0].mean()), 3),
                "inside the region: mean |result - photo|": round(float(diff[union == 1].mean()), 2),
            }
        )
        tiles.append((result.image, rows[-1]["run"]))
        print("  " + "  ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    return rows, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=3, help=f"lite0's pairs, of {len(PAIRS)}")
    parser.add_argument("--hed-pairs", type=int, default=1, help="hed's (its runs are slow on a CPU)")
    parser.add_argument("-o", "--output", default="regions-out")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(precision.device_line(precision.resolve("float32", "lbfgs"), threads()))
    print(f"{args.size} px, seed {args.seed}, {args.iterations} iterations")

    rows, tiles = histogram_rows(args, judges())
    table = mean_rows(rows)
    save_results(
        "regions",
        "The histogram term added, judged by the network that did not make the image",
        table,
        name="histogram",
        size=args.size,
        iterations=args.iterations,
        pairs=sorted({r["pair"] for r in rows}),
    )
    contact_sheet(tiles, columns=2, tile_size=300, title="style loss alone | + histogram", font_size=12).save(
        out / "histogram.png"
    )
    masks, mask_tiles = mask_rows(args)
    save_results(
        "regions",
        "A mask keeps the photo where it is black (rocket x The Scream, lite0)",
        masks,
        name="masks",
        size=args.size,
        iterations=args.iterations,
    )
    for row in table:
        print(" | ".join(str(v) for v in row.values()))
    lite0 = [r for r in table if r["preset"] == "lite0 gram"]
    print(
        f"histogram: style {lite0[0]['style']:.3f} -> {lite0[1]['style']:.3f}, "
        f"contrast {lite0[0]['contrast vs painting']:.2f} -> {lite0[1]['contrast vs painting']:.2f}"
    )


if __name__ == "__main__":
    main()
