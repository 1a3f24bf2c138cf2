"""Which start wins on each L-BFGS preset's own objective: the photo, or the photo recoloured.

time_to_quality.py finds nstyle's fastest recipe on one objective (the seed's, random ResNet50
features); this asks which of its parts should be a preset's default. For each preset, on its
own objective and its own network (Lite0 and HED's VGG16 trained, offline; ResNet50 with random
weights unless ``--weights imagenet``, which downloads), the preset as it was (L-BFGS from the photo,
its 300 iterations) sets the target: its best loss. Each candidate start then runs until its loss
reaches that target, and its time is compared with the time the photo start took to reach it:

- ``recolored``: the photo in the painting's colours (``--init recolored``);
- ``recolored-3-scales``: that, then 60 L-BFGS iterations at a quarter and at half the size
  before the full size (time_to_quality's best recipe).

A candidate that keeps less of the photo (a higher content term when it reaches the target) is
marked. Each result is saved as ``OUT/<preset>-<start>.png`` (``photo``, or a candidate's name), to look at.

    python benchmarks/start_image.py [--presets lite0 hed default] [--weights random:0] [--out /tmp/start_image]

Ends with ``time_ratio: X``: the recoloured start's time over the photo's, the largest over the
presets (below 1: it wins on every one).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from common import CONTENT, STYLE, Clock, save_results

from nstyle import stylize
from nstyle.backbones import precision
from nstyle.backends import use_all_cores

#: preset -> size: sizes that keep the whole run to minutes on two cores.
PRESETS: dict[str, int] = {"lite0": 384, "hed": 192, "default": 256}
#: presets whose ImageNet weights cannot be had offline: they run on ``--weights`` instead
RESNET = {"default"}
CANDIDATES: dict[str, dict] = {
    "recolored": {"init": "recolored"},
    "recolored-3-scales": {"init": "recolored", "scales": 3, "scale_factor": 2.0},
}
COARSE_ITERATIONS = 60


def run(preset: str, settings: dict, iterations: int, out: Path, name: str, target: float = -math.inf) -> Clock:
    """One run of ``preset`` with ``settings``, timed from the call; its result saved as a PNG."""
    scales = settings.get("scales", 1)
    options = {"size": PRESETS[preset], "seed": 0, "precision": "float32", "init": "content", **settings}
    if scales > 1:
        options["scale_iterations"] = [COARSE_ITERATIONS] * (scales - 1) + [iterations]
    clock = Clock(final_from=COARSE_ITERATIONS * (scales - 1) + 1, target=target)
    result = stylize(CONTENT, STYLE, preset=preset, iterations=iterations, callbacks=[clock], **options)
    result.image.save(out / f"{preset}-{name}.png")
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--iterations", type=int, default=300, help="the photo start's iterations (the presets')")
    parser.add_argument("--out", type=Path, default=Path("/tmp/start_image"))
    parser.add_argument(
        "--weights",
        default="random:0",
        help="the default preset's ResNet50 weights: random:0 offline, imagenet where it downloads",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    threads = use_all_cores()
    print(f"CPU: {precision.host_cpu().describe()}; TensorFlow intra-op threads: {threads}; float32")
    worst, rows = 0.0, []
    for preset in args.presets:
        weights = {"weights": args.weights} if preset in RESNET else {}
        run(preset, weights, 2, args.out, "warm-up")  # the network built and compiled once, untimed
        photo = run(preset, weights, args.iterations, args.out, "photo")
        best = min(range(len(photo.trace)), key=lambda i: photo.trace[i][1])
        seconds, target, content = photo.trace[best]
        source = weights.get("weights", "trained")
        print(
            f"{preset} ({source} weights, {PRESETS[preset]} px): from the photo, best loss {target:.5g} "
            f"(content term {content:.4g}) at iteration {best + 1}, {seconds:.1f} s"
        )
        rows.append(
            {
                "preset": f"{preset} ({source} weights, {PRESETS[preset]} px)",
                "start": "photo (the target)",
                "seconds": round(seconds, 1),
                "final-scale iterations": best + 1,
                "ratio": 1.0,
                "content term": content,
            }
        )
        for name, settings in CANDIDATES.items():
            clock = run(preset, {**weights, **settings}, 4 * args.iterations, args.out, name, target)
            elapsed, total, kept = clock.trace[-1]
            ratio = elapsed / seconds if total <= target else math.inf
            mark = "" if kept <= content else " -- keeps less of the photo"
            print(
                f"  {name:19} {'reached' if total <= target else 'not reached'} in {elapsed:.1f} s "
                f"({len(clock.trace)} final-scale iterations), ratio {ratio:.3f}; content term {kept:.4g}{mark}"
            )
            rows.append(
                {
                    "preset": preset,
                    "start": name + ("" if kept <= content else " (keeps less of the photo)"),
                    "seconds": round(elapsed, 1) if total <= target else None,
                    "final-scale iterations": len(clock.trace),
                    "ratio": round(ratio, 3),
                    "content term": kept,
                }
            )
            if name == "recolored":
                worst = max(worst, ratio)
    summary = f"time_ratio: {worst:.3f}"
    save_results("start_image", "Start images on each L-BFGS preset's own objective", rows, summary)
    print(summary)


if __name__ == "__main__":
    main()
