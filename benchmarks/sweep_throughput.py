"""Sweep throughput: the same 4-trial sweep with 1 and with 2 local workers, in one run.

Each trial stylizes a sample image (ResNet50, random weights, L-BFGS) at a small size. With
N workers each process gets cpu_count / N TensorFlow threads, so the comparison is of how
the same cores are best shared: one trial at a time on all of them, or several at once.
Worker start-up (a fresh process importing TensorFlow) is part of the measured time,
as it is for a user.

    python benchmarks/sweep_throughput.py [--trials 128:40 256:60]

Prints trials per minute for each setting; ends with ``ratio (2 workers / 1): X`` for the
last (longest) trials.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import save_results

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


def trials_per_minute(size: int, iterations: int, tmp: Path) -> tuple[int, dict[int, float]]:
    """The sweep's trial count, and its trials per minute with 1 and with 2 workers."""
    images = ROOT / "examples" / "images"
    path = tmp / f"sweep-{size}.toml"
    path.write_text(
        SWEEP.format(
            content=images / "content" / "chelsea.jpg",
            style=images / "style" / "starry_night.jpg",
            size=size,
            iterations=iterations,
        )
    )
    spec = load_sweep(path)
    print(f"{len(spec.trials)} trials, {size} px, {iterations} L-BFGS iterations, {os.cpu_count()} CPUs")
    rates = {}
    for workers in (1, 2):
        start = time.perf_counter()
        sweep(spec, tmp / f"{size}-workers{workers}", workers=workers, progress=False)
        seconds = time.perf_counter() - start
        rates[workers] = len(spec.trials) / seconds * 60
        print(f"workers={workers}: {seconds:.1f} s, {rates[workers]:.2f} trials/min")
    return len(spec.trials), rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--trials", nargs="+", default=["128:40", "256:60"], help="SIZE:ITERATIONS of each sweep's trials"
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for trial in args.trials:
            size, iterations = map(int, trial.split(":"))
            count, rates = trials_per_minute(size, iterations, Path(tmp))
            rows.append(
                {
                    "trials": f"{count} of {size} px, {iterations} L-BFGS iterations",
                    "1 worker, trials/min": round(rates[1], 2),
                    "2 workers, trials/min": round(rates[2], 2),
                    "ratio": round(rates[2] / rates[1], 2),
                }
            )
    ratio = rows[-1]["ratio"]
    save_results("sweep_throughput", "Sweep throughput, 1 and 2 local workers", rows, f"ratio: {ratio:.2f}")
    print(f"ratio (2 workers / 1): {ratio:.2f}")


if __name__ == "__main__":
    main()
