"""What the benchmarks share: the bundled pair, one float32 ruler for any run's result, and a
clock that stops a run at a target loss."""

from __future__ import annotations

import datetime
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from nstyle.backbones import FeatureExtractor, get_backbone, load_model
from nstyle.config import Config
from nstyle.io import fit, load_image
from nstyle.losses import objective, tensor
from nstyle.optimize import Progress, Stop

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples/images/content/chelsea.jpg"
STYLE = ROOT / "examples/images/style/starry_night.jpg"
RESULTS = ROOT / "benchmarks" / "results"


def save_results(
    script: str, title: str, rows: list[dict[str, Any]], summary: str = "", *, name: str = "", **facts: Any
) -> Path:
    """A benchmark's figures as ``benchmarks/results/NAME.json`` (NAME: the script's, unless a
    script writes several tables), with the machine, the date and the versions they were measured
    with: the docs render their tables from these files."""
    import keras

    from nstyle._version import __version__
    from nstyle.backbones import precision
    from nstyle.backends import NAMES, backend_version, distribution_version, is_installed

    data = {
        "script": f"{script}.py",
        "title": title,
        "cpu": precision.host_cpu().describe(),
        "date": datetime.date.today().isoformat(),
        "versions": {
            "nstyle": __version__,
            "python": platform.python_version(),
            keras.backend.backend(): backend_version(),
            **{
                name: distribution_version(name)
                for name in NAMES
                if name != keras.backend.backend() and is_installed(name)
            },
            "keras": keras.__version__,
        },
        "rows": rows,
        "summary": summary,
        **facts,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name or script}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


class Float32Loss:
    """``cfg``'s objective on the bundled pair at ``cfg.size``, network and statistics in float32.

    Low-precision runs report losses computed by their own low-precision network; comparing
    them with float32 runs needs one ruler, and this is it.
    """

    def __init__(self, cfg: Config, content: Path = CONTENT, style: Path = STYLE):
        backbone = get_backbone(cfg.backbone)
        names = [s.name for s in (*cfg.content_layers, *cfg.style_layers)]
        extractor = FeatureExtractor(backbone, load_model(cfg.backbone, cfg.weights), names, precision="float32")
        self.prep = backbone.preprocessing
        content_img = fit(load_image(content, "content"), cfg.size, "content")
        style_img = fit(load_image(style, "style"), round(cfg.size * cfg.style_scale), "style")
        self.loss = objective(cfg, extractor, content_img, [style_img])

    def __call__(self, rgb) -> dict[str, float]:
        """The loss terms of an RGB image (PIL or uint8 array) of the content's size."""
        x = tensor(self.prep.forward(np.asarray(rgb, np.float32))[None])
        return {k: float(v) for k, v in self.loss(x).items()}


class Clock:
    """Records (seconds since start, loss) at each iteration of the final scale; stops at a target.

    With ``ruler`` (a low-precision run), a reported loss near the target is checked by
    evaluating the current image in float32, the clock paused meanwhile.
    """

    def __init__(self, final_from: int, target: float = -math.inf, ruler: Float32Loss | None = None):
        self.start = time.perf_counter()
        self.final_from = final_from  # the first iteration (1-based, across scales) of the final scale
        self.target = target
        self.ruler = ruler
        self.trace: list[tuple[float, float, float]] = []  # (seconds, total, content term)
        self.reached: float | None = None

    def __call__(self, p: Progress) -> None:
        if p.iteration < self.final_from:
            return
        elapsed = time.perf_counter() - self.start
        losses = p.losses
        if self.ruler is not None and losses["total"] <= 1.05 * self.target:
            paused = time.perf_counter()
            losses = self.ruler(p.image())
            self.start += time.perf_counter() - paused
        self.trace.append((elapsed, losses["total"], losses["content"]))
        if losses["total"] <= self.target:
            self.reached = elapsed
            raise Stop
