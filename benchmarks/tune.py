"""nstyle tune against the preset it starts from: the pick and the preset rendered afresh, judged.

For each pair, ``nstyle tune`` searches from the lite0 preset within ``--budget`` seconds, and
its pick is rendered at ``--size``; the preset is rendered at the same size with the same seed.
Both are scored by VGG16-HED, the judge that did not make either (nstyle.judges), and by
Lite0, the network both were optimised with, beside it (an optimiser can fool its own
network: its scores are shown, not trusted). The last pair was not used while tune was being
developed. Also shown: how long each search took against its budget.

    python benchmarks/tune.py [--budget 300] [--size 384] [--figure docs/tune.png]

Ends with ``budget: B s -> X s`` (the longest search).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import ROOT, save_results
from quality import IMAGES

import nstyle
from nstyle.backbones import precision
from nstyle.backends import threads
from nstyle.io import fit, load_image
from nstyle.judges import judge
from nstyle.sheets import contact_sheet
from nstyle.workflows.tune import tune

#: (content, style, whether tune was developed on it: the astronaut's report led to Lite0's wider
#: style weight range, so a fourth pair, never run while developing, is the held-out one)
PAIRS = [
    ("chelsea", "starry_night", True),
    ("rocket", "the_scream", True),
    ("astronaut", "shipwreck", True),
    ("coffee", "the_scream", False),
]
JUDGE, OWN = "VGG16-HED", "Lite0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--figure", default=str(ROOT / "docs" / "tune.png"))
    args = parser.parse_args()
    print(precision.device_line(precision.resolve("float32", "lbfgs"), threads()))
    rows, tiles, searches = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for content_name, style_name, developed in PAIRS:
            content, style = IMAGES / "content" / f"{content_name}.jpg", IMAGES / "style" / f"{style_name}.jpg"
            pair = f"{content_name} x {style_name}" + ("" if developed else " (held out)")
            done = tune(
                content,
                style,
                Path(tmp) / content_name,
                preset="lite0",
                budget=args.budget,
                size=args.size,
                progress=False,
            )
            searches.append(done.search_seconds)
            preset = nstyle.stylize(content, style, preset="lite0", size=args.size, seed=0)
            pick = nstyle.stylize(content, style, config=done.config)
            photo, painting = fit(load_image(content), args.size), fit(load_image(style), args.size)
            for which, result in (("preset", preset), (f"pick: {done.pick}", pick)):
                row = {"pair": pair, "run": which}
                for name in (JUDGE, OWN):
                    s, c = judge(name).scores(result.image, photo, painting)
                    row[f"{name} style"], row[f"{name} content"] = round(s, 4), round(c, 4)
                rows.append(row)
                caption = (
                    f"{pair}: {which}\n{JUDGE}: style {row[f'{JUDGE} style']:.3f} content {row[f'{JUDGE} content']:.3f}"
                )
                tiles.append((result.image, caption))
            base, tuned = rows[-2], rows[-1]
            for axis in ("style", "content"):
                tuned[f"{JUDGE} {axis} vs preset"] = (
                    f"{100 * (tuned[f'{JUDGE} {axis}'] / base[f'{JUDGE} {axis}'] - 1):+.1f}%"
                )
            tuned["search s"], tuned["rungs"] = round(done.search_seconds), done.rungs_run
            print(
                f"  {pair}: searched {done.search_seconds:.0f} s, pick {done.pick}; "
                + ", ".join(f"{k} {v}" for k, v in tuned.items() if "vs preset" in k),
                flush=True,
            )
    title = f"nstyle tune's pick against the lite0 preset, both rendered at {args.size} px and judged (lower is closer)"
    save_results("tune", title, rows, budget=args.budget, size=args.size, searches=[round(s, 1) for s in searches])
    contact_sheet(tiles, columns=2, tile_size=320, font_size=12).save(Path(args.figure))
    print(f"budget: {args.budget:.0f} s -> {max(searches):.0f} s")


if __name__ == "__main__":
    main()
