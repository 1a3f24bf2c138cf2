"""Sweep throughput: the same 4-trial sweep with 1 and with 2 local workers, in one run.

Each trial stylizes a sample image (ResNet50, random weights, L-BFGS) at a small size. With
N workers each process gets cpu_count / N TensorFlow threads, so the comparison is of how
the same cores are best shared: one trial at a time on all of them, or several at once.
Worker start-up (a fresh process importing TensorFlow) is part of the measured time,
as it is for a user.

    python benchmarks/sweep_throughput.py [--size 128] [--iterations 40]

Prints trials per minute for each setting and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from nstyle.workflows import load_sweep, sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
content = "{content}"
style = "{style}"
preset = "default"
[base]
weights = "random:0"
size = {size}
iterations = {iterations}
[axes]
style_weight = [1e4, 1e5, 1e6, 1e7]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()

    images = ROOT / "examples" / "images"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.toml"
        path.write_text(
            SWEEP.format(
                content=images / "content" / "chelsea.jpg",
                style=images / "style" / "starry_night.jpg",
                size=args.size,
                iterations=args.iterations,
            )
        )
        spec = load_sweep(path)
        print(f"{len(spec.trials)} trials, {args.size} px, {args.iterations} L-BFGS iterations, {os.cpu_count()} CPUs")
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            sweep(spec, Path(tmp) / f"workers{workers}", workers=workers, progress=False)
            seconds = time.perf_counter() - start
            rates[workers] = len(spec.trials) / seconds * 60
            print(f"workers={workers}: {seconds:.1f} s, {rates[workers]:.2f} trials/min")
    print(f"ratio (2 workers / 1): {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
