"""Every shipped preset on the cat and The Starry Night, one contact sheet: does each one stylize?

Offline, only Lite0 and VGG16-HED have trained weights here, so a preset made for an
ImageNet network it cannot download runs on what is here, and its caption says so: the
ResNet50 presets with seeded random weights, the VGG19 tutorial on VGG16-HED. With a network,
``--weights imagenet`` runs every preset as shipped.

    python benchmarks/presets.py [--size 256] [--iterations 200] [--weights offline] [-o docs/presets.png]

``--iterations`` caps each preset's own count (the seed's 1000 Adam steps, the tutorial's 1000)
so that the sheet takes minutes; prints one line per preset and the border roughness of
each result (its outer 3 rows and columns against the median: a noise band reads above 1.4);
ends with ``worst_border: X``, the roughest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import save_results
from PIL import Image

from nstyle.api import stylize
from nstyle.config import preset_names, resolve
from nstyle.sheets import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "images" / "content" / "chelsea.jpg"
STYLE = ROOT / "examples" / "images" / "style" / "starry_night.jpg"
#: what each ImageNet network becomes offline
OFFLINE = {
    "resnet50": {"weights": "random:0"},
    "vgg19": {"backbone": "vgg16", "weights": "hed"},
    "vgg16": {"weights": "hed"},
}


def border_roughness(image: Image.Image, rows: int = 3) -> float:
    """The roughest of the four borders: neighbour differences of the outer rows over the median row's."""
    a = np.asarray(image, np.float32)
    by_row = np.abs(np.diff(a, axis=1)).mean(axis=(1, 2))
    by_col = np.abs(np.diff(a, axis=0)).mean(axis=(0, 2))
    return max(
        float(edge.mean() / np.median(line)) for line in (by_row, by_col) for edge in (line[:rows], line[-rows:])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--weights", default="offline", help="'offline' (see above) or 'imagenet'")
    parser.add_argument("-o", "--output", default="docs/presets.png")
    args = parser.parse_args()

    tiles = [(Image.open(CONTENT), "content"), (Image.open(STYLE), "style")]
    rows = []
    for name in preset_names():
        cfg = resolve(name)
        extra = OFFLINE.get(cfg.backbone, {}) if args.weights == "offline" and cfg.weights == "imagenet" else {}
        if cfg.backbone == "efficientnet_lite0":
            extra = {}
        cfg = resolve(
            name, overrides={**extra, "size": args.size, "iterations": min(cfg.iterations, args.iterations), "seed": 0}
        )
        start = time.perf_counter()
        result = stylize(CONTENT, STYLE, config=cfg)
        seconds = time.perf_counter() - start
        roughness = border_roughness(result.image)
        network = f"{cfg.backbone} {cfg.weights}"
        print(
            f"{name:16s} {network:28s} {len(result.history):4d} it {seconds:6.1f} s  border {roughness:.2f}  {result.outcome.describe()}",
            flush=True,
        )
        rows.append(
            {
                "preset": name,
                "network": network,
                "iterations": len(result.history),
                "seconds": round(seconds, 1),
                "border roughness": round(roughness, 2),
                "outcome": result.outcome.describe(),
            }
        )
        tiles.append((result.image, f"{name}\n{network}, {cfg.optimizer} {len(result.history)} it"))
    contact_sheet(tiles, columns=len(tiles), tile_size=args.size, title=f"every preset at {args.size} px").save(
        args.output
    )
    print(f"wrote {args.output}")
    worst = max(r["border roughness"] for r in rows)
    title = f"Every preset at {args.size} px, {args.iterations} iterations at most"
    save_results("presets", title, rows, f"worst_border: {worst:.2f}")
    print(f"worst_border: {worst:.2f}")


if __name__ == "__main__":
    main()
