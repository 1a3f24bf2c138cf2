"""Calibrates nstyle's memory model: a network's bytes per pixel, measured as peak RSS.

For each (backbone, optimiser, precision) it stylizes the bundled pair at two sizes, each in
a fresh process, for two iterations with the backbone's default layers, and reads two figures
of that process: its resident memory once the network is built (``base``, what
:mod:`nstyle.plan` reads live before a run) and its peak RSS (``ru_maxrss``). The slope
between the two sizes is the bytes per pixel of one forward and backward pass plus the
optimiser's state; :data:`nstyle.plan.NETWORK_BYTES` and :data:`nstyle.plan.OPTIMIZER_BYTES`
hold these figures, and the last column checks the model against the measurement.

    python benchmarks/memory_model.py [--sizes 512 1024]

Ends with ``max_error: X`` (the largest |estimate / measured - 1| over all runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import save_results

from nstyle.backbones.precision import host_cpu

RUNS = [  # backbone, weights, optimizer, precision
    ("resnet50", "random:0", "lbfgs", "float32"),
    ("resnet50", "random:0", "adam", "float32"),
    ("resnet50", "random:0", "adam", "bfloat16"),
    ("efficientnet_lite0", "imagenet", "lbfgs", "float32"),
    ("vgg19", "random:0", "lbfgs", "float32"),
]

CHILD = r"""
import json, resource, sys
import psutil
from nstyle.api import stylize
from nstyle.backbones import feature_extractor, get_backbone, load_model
from nstyle.config import resolve
from nstyle.plan import MemoryModel
backbone, weights, optimizer, precision, size = sys.argv[1:6]
cfg = resolve("default", None, {"backbone": backbone, "weights": weights, "optimizer": optimizer,
                                "precision": precision, "size": int(size), "iterations": 2, "scales": 1})
names = tuple(s.name for s in (*cfg.content_layers, *cfg.style_layers))
extractor = feature_extractor(get_backbone(cfg.backbone), load_model(cfg.backbone, cfg.weights), names, precision)
base = psutil.Process().memory_info().rss
model = MemoryModel.for_run(cfg, extractor, precision)
result = stylize("examples/images/content/chelsea.jpg", "examples/images/style/starry_night.jpg", config=cfg)
w, h = result.image.size
print(json.dumps({"base": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "pixels": w * h, "estimate": model.whole(w * h)}))
"""


def measure(backbone: str, weights: str, optimizer: str, precision: str, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, backbone, weights, optimizer, precision, str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[512, 1024])
    args = parser.parse_args()
    print(f"CPU: {host_cpu().describe()}")
    print("| backbone | optimizer | precision | base GB | peak GB (small, large) | bytes/px | estimate / measured |")
    print("|---|---|---|---|---|---|---|")
    worst, rows = 0.0, []
    for backbone, weights, optimizer, precision in RUNS:
        small, large = (measure(backbone, weights, optimizer, precision, s) for s in args.sizes)
        slope = (large["peak"] - small["peak"]) / (large["pixels"] - small["pixels"])
        ratios = [r["estimate"] / r["peak"] for r in (small, large)]
        worst = max(worst, *(abs(r - 1) for r in ratios))
        print(
            f"| {backbone} | {optimizer} | {precision} | {small['base'] / 2**30:.2f} | "
            f"{small['peak'] / 2**30:.2f}, {large['peak'] / 2**30:.2f} | {slope:.0f} | "
            f"{', '.join(f'{r:.2f}' for r in ratios)} |",
            flush=True,
        )
        rows.append(
            {
                "backbone": backbone,
                "optimizer": optimizer,
                "precision": precision,
                "base GB": round(small["base"] / 2**30, 2),
                "peak GB, small": round(small["peak"] / 2**30, 2),
                "peak GB, large": round(large["peak"] / 2**30, 2),
                "bytes/px": round(slope),
                "estimate / measured": ", ".join(f"{r:.2f}" for r in ratios),
            }
        )
    title = f"Memory model: peak RSS at {args.sizes[0]} and {args.sizes[1]} px against the plan's estimate"
    save_results("memory_model", title, rows, f"max_error: {worst:.3f}", sizes=args.sizes)
    print(f"max_error: {worst:.3f}")


if __name__ == "__main__":
    main()
