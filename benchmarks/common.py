"""What the benchmarks share: the bundled pair, and one float32 ruler for any run's result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstyle.api import objective
from nstyle.backbones import FeatureExtractor, get_backbone, load_model
from nstyle.config import Config
from nstyle.io import fit, load_image
from nstyle.losses import tf

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples/images/content/chelsea.jpg"
STYLE = ROOT / "examples/images/style/starry_night.jpg"


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
        x = tf.constant(self.prep.forward(np.asarray(rgb, np.float32))[None])
        return {k: float(v) for k, v in self.loss(x).items()}
