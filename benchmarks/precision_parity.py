"""Precision parity: do low-precision runs reach the same loss and look the same as float32?

The seed, default and lite0 presets each stylize the cat with The Starry Night twice, same
seed, size and iterations: once in float32 and once in the low precision (``auto`` by default:
what this machine picks for the preset's optimiser, which is float32 for L-BFGS everywhere and
for everything on a CPU without bf16 units; ``--precision bfloat16`` forces it, run in
TensorFlow's emulation where the CPU has no bf16 units: slower, but rounded the same way). Every final image is then scored
with the preset's own loss computed in float32, so both sides are measured by one ruler, and
the ratio low/float32 is printed (target: within 3%). ``docs/precision_parity.png`` shows the
pairs side by side.

ResNet50 presets use seeded random weights offline (``--weights`` to change); lite0 is trained.
Where the low precision is float32 (``auto`` on this CPU, or for L-BFGS) the one float32 run
stands on both sides and the ratio is 1.

    python benchmarks/precision_parity.py [--precision auto] [--size 256] [--iterations 200]

Ends with ``max_deviation: X`` (the largest |ratio - 1| over the presets).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import CONTENT, ROOT, STYLE, Float32Loss, save_results

from nstyle import stylize
from nstyle.backbones import precision
from nstyle.backends import use_all_cores
from nstyle.config import resolve
from nstyle.sheets import contact_sheet

PRESETS = ("seed", "default", "lite0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="auto", choices=("auto", "bfloat16", "float16"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--weights", default="random:0", help="for the ResNet50 presets")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--sheet", type=Path, default=ROOT / "docs/precision_parity.png")
    args = parser.parse_args()

    threads = use_all_cores()
    print(f"CPU: {precision.host_cpu().describe()}; threads {threads}")
    print(f"--precision {args.precision}; {args.size} px, {args.iterations} iterations, seed 0")
    print("| preset  | optimizer | low       | float32 loss | low loss   | ratio  | float32 s | low s  |")
    tiles, deviations, rows = [], [], []
    for name in args.presets:
        options = {"size": args.size, "iterations": args.iterations, "seed": 0}
        if name != "lite0":
            options["weights"] = args.weights
        optimizer = resolve(name).optimizer
        low = precision.resolve(args.precision, optimizer).name
        runs = {"float32": stylize(CONTENT, STYLE, preset=name, precision="float32", **options)}
        runs[low] = (
            runs["float32"] if low == "float32" else stylize(CONTENT, STYLE, preset=name, precision=low, **options)
        )
        ruler = Float32Loss(runs["float32"].config)
        scores = {p: ruler(r.image)["total"] for p, r in runs.items()}
        ratio = scores[low] / scores["float32"]
        deviations.append(abs(ratio - 1))
        print(
            f"| {name:7} | {optimizer:9} | {low:9} | {scores['float32']:12.5g} | {scores[low]:10.5g} | {ratio:.4f} | "
            f"{runs['float32'].seconds:9.1f} | {runs[low].seconds:6.1f} |"
        )
        row = {
            "preset": name,
            "optimizer": optimizer,
            "low precision": low,
            "float32 loss": scores["float32"],
            "low loss": scores[low],
            "ratio": round(ratio, 4),
            "float32 s": round(runs["float32"].seconds, 1),
            "low s": round(runs[low].seconds, 1),
        }
        for p, r in runs.items():
            tiles.append((r.image, f"{name}, {p}\nloss {scores[p]:.4g} (float32)"))
        if low != "float32":
            difference = np.abs(np.asarray(runs["float32"].image, np.float32) - np.asarray(runs[low].image, np.float32))
            print(f"  mean |pixel difference| float32 vs {low}: {difference.mean():.2f} of 255")
            row["mean pixel difference"] = round(float(difference.mean()), 2)
        rows.append(row)
    sheet = contact_sheet(
        tiles,
        columns=2,
        tile_size=320,
        title=f"float32 (left) vs --precision {args.precision} (right), {args.size} px, {args.iterations} iterations",
    )
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.sheet)
    print(f"wrote {args.sheet}")
    summary = f"max_deviation: {max(deviations):.4f}"
    save_results(
        "precision_parity",
        f"Precision parity, --precision {args.precision}, {args.size} px, {args.iterations} iterations",
        rows,
        summary,
    )
    print(summary)


if __name__ == "__main__":
    main()
