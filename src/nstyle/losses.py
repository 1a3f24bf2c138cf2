"""Loss terms of Gatys-style transfer, and their weighted sum with targets fixed once.

The term functions are the notebook's (and the tf.keras tutorial's) definitions:
content is the mean squared feature difference; style compares Gram matrices divided by
the number of spatial positions; total variation penalises neighbouring-pixel differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ._tf import quiet_tensorflow
from .backbones import FeatureExtractor

tf = quiet_tensorflow()


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Channel co-occurrence ``F^T F / (H W)`` of ``(..., H, W, C)`` features.

    Dividing by the number of positions (not by C too) keeps the notebook's scale, so its
    style weight of 1e6 means the same thing here.
    """
    channels = tf.shape(features)[-1]
    flat = tf.reshape(features, [-1, channels])
    positions = tf.cast(tf.shape(flat)[0], flat.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / positions


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of activations."""
    return tf.reduce_mean(tf.square(features - target))


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """Mean squared difference between this image's Gram matrix and the target's."""
    return tf.reduce_mean(tf.square(gram_matrix(features) - target_gram))


def total_variation(image: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of horizontally plus vertically neighbouring pixels.

    Squared rather than absolute differences keep the loss smooth, which L-BFGS needs.
    """
    dy = image[:, 1:, :, :] - image[:, :-1, :, :]
    dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))


@dataclass(frozen=True)
class WeightedLayer:
    """A Keras layer name and its relative weight within its term."""

    layer: str
    weight: float


class StyleTransferLoss:
    """content_weight * content + style_weight * style + tv_weight * TV for one content/style pair.

    Targets (content activations, style Grams) are computed once here, never per step.
    Within a term, layers are averaged with their relative weights: ``sum(w L) / sum(w)``,
    which for equal weights is the notebook's ``1 / number of layers``.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        content_image: tf.Tensor,
        style_image: tf.Tensor,
        content_layers: Sequence[WeightedLayer],
        style_layers: Sequence[WeightedLayer],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ):
        self.extractor = extractor
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        content_features = extractor(content_image)
        style_features = extractor(style_image)
        self.content_targets = {s.layer: tf.constant(content_features[s.layer]) for s in self.content_layers}
        self.style_targets = {s.layer: tf.constant(gram_matrix(style_features[s.layer])) for s in self.style_layers}

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """Loss terms and their weighted ``total`` for a batch of one image in network space."""
        features = self.extractor(image)
        content = _weighted_mean(
            [(s.weight, content_loss(features[s.layer], self.content_targets[s.layer])) for s in self.content_layers]
        )
        style = _weighted_mean(
            [(s.weight, style_loss(features[s.layer], self.style_targets[s.layer])) for s in self.style_layers]
        )
        tv = total_variation(image)
        cw, sw, tw = self.weights
        return {"total": cw * content + sw * style + tw * tv, "content": content, "style": style, "tv": tv}


def _weighted_mean(terms: list[tuple[float, tf.Tensor]]) -> tf.Tensor:
    if not terms:
        return tf.constant(0.0)
    return tf.add_n([w * t for w, t in terms]) / sum(w for w, _ in terms)
