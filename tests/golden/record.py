"""Record the loss histories of a few seeded float32 runs, the numbers a refactoring must keep.

Whole image (Adam, L-BFGS), multi-scale, tiled and video, on random weights with a fixed seed,
so that no download is needed. The histories depend on the CPU's kernels, so each CPU kind gets
its own file, ``histories-<kind>.json``; ``tests/e2e/test_golden.py`` compares against the file of
the CPU it runs on. The files were recorded when ``random:N`` weights became NumPy draws, with the
TensorFlow-only engine that came before the move to ``keras.ops`` (the commit is named in each
file; the earlier fixtures, of Keras-initialised weights, could not be re-recorded on their CPUs
and were retired). To record for another CPU, run this from a checkout of that commit, so that
the numbers are the old code's:

    git worktree add /tmp/before COMMIT
    PYTHONPATH=/tmp/before/src .venv/bin/python tests/golden/record.py

A change that computes some cases differently on purpose re-records only those, on the CPUs it
can, and the file names the commit and why (``rerecorded``):

    .venv/bin/python tests/golden/record.py --cases tiled-adam tiled-lbfgs --why "..."
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[1] / "examples"
CONTENT = SAMPLES / "images" / "content" / "chelsea.jpg"
STYLE = SAMPLES / "images" / "style" / "starry_night.jpg"
CLIP = SAMPLES / "video" / "pan.mp4"
TINY = {"weights": "random:0", "seed": 7, "precision": "float32"}

CASES: dict[str, dict[str, Any]] = {
    "whole-adam": {"preset": "seed", "size": 64, "iterations": 8},
    "whole-lbfgs": {"preset": "default", "size": 64, "iterations": 8},
    "multiscale-lbfgs": {"preset": "default", "size": 72, "iterations": 4, "scales": 2, "scale_factor": 1.5},
    "tiled-adam": {"preset": "seed", "size": 96, "iterations": 4, "tile": 64},
    "tiled-lbfgs": {"preset": "default", "size": 96, "iterations": 3, "tile": 64},
}
VIDEO = {"preset": "seed", "size": 48, "iterations": 6}
VIDEO_RUN = {"frame_iterations": 3, "max_frames": 3}


def cpu_kind() -> str:
    """The CPU's name, family and model, and vector units, as a file name: the kernels TensorFlow
    picks follow them (two CPUs of one name and instruction set can still round differently)."""
    from nstyle.backbones import precision

    cpu = precision.host_cpu()
    info = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    found = {k: re.search(rf"^{k}\s*:\s*(\S+)", info, re.M) for k in ("cpu family", "model")}
    family, model = (m.group(1) if m else "?" for m in found.values())
    words = f"{cpu.name} f{family} m{model} {cpu.vector_units} {cpu.bf16_units or 'no-bf16'}"
    return re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")


def histories() -> dict[str, Any]:
    """Each case's losses per iteration (total, content, style), and the video's frames' mean pixel values."""
    from nstyle.api import stylize

    out: dict[str, Any] = {}
    for name, options in CASES.items():
        result = stylize(CONTENT, STYLE, **TINY, **options)
        out[name] = [{k: h[k] for k in ("total", "content", "style")} for h in result.history]
    try:
        import numpy as np
        from PIL import Image

        from nstyle.video import stylize_video
    except ImportError:
        return out
    with tempfile.TemporaryDirectory() as folder:
        stylize_video(CLIP, STYLE, Path(folder) / "frames", **TINY, **VIDEO, **VIDEO_RUN)
        frames = sorted((Path(folder) / "frames").glob("*.png"))
        out["video-adam"] = [float(np.asarray(Image.open(f), np.float64).mean()) for f in frames]
    return out


def main(argv: list[str] | None = None) -> None:
    """Record every case, or with ``--cases NAME ...`` re-record only those into this CPU's file:
    for a change that computes them differently on purpose, named in the file with its commit."""
    import argparse

    import nstyle
    from nstyle.backbones import precision

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", nargs="+", choices=[*CASES, "video-adam"], help="only these, into the file")
    parser.add_argument("--why", default="", help="what changed in them (with --cases)")
    args = parser.parse_args(argv)
    source = Path(nstyle.__file__).resolve().parent  # the code measured, wherever it was imported from
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=source).stdout.strip()
    path = HERE / f"histories-{cpu_kind()}.json"
    if args.cases:
        record = json.loads(path.read_text())
        now = histories()
        for case in args.cases:
            record["cases"][case] = now[case]
            record.setdefault("rerecorded", {})[case] = {"commit": commit, "why": args.why}
    else:
        record = {"cpu": precision.host_cpu().describe(), "commit": commit, "cases": histories()}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
