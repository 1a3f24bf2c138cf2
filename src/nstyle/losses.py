"""Loss terms of Gatys-style transfer, and their weighted sum with targets fixed once.

The term functions are the notebook's (and the tf.keras tutorial's) definitions:
content is the mean squared feature difference; style compares Gram matrices divided by
the number of spatial positions; total variation penalises neighbouring-pixel differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ._tf import quiet_tensorflow
from .backbones import FeatureExtractor

tf = quiet_tensorflow()


@tf.custom_gradient
def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Channel co-occurrence ``F^T F / (H W)`` of ``(..., H, W, C)`` features.

    Dividing by the number of positions (not by C too) keeps the notebook's scale, so its
    style weight of 1e6 means the same thing here. The gradient is written out because
    TensorFlow's generic one differentiates ``F^T F`` as a product of two different matrices,
    two matmuls where ``F (dG + dG^T) / (H W)`` needs one: a quarter of a step's time at
    384x512 on the notebook's layers went to Gram matrices.
    """
    shape = tf.shape(features)
    flat = tf.reshape(features, [-1, shape[-1]])
    positions = tf.cast(tf.shape(flat)[0], flat.dtype)
    gram = tf.matmul(flat, flat, transpose_a=True) / positions

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.matmul(flat, upstream + tf.transpose(upstream)) / positions, shape)

    return gram, gradient


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


def swag(features: tf.Tensor, temperature: float) -> tf.Tensor:
    """SWAG's smoothing (Wang, Li & Vasconcelos, CVPR 2021): one softmax over every element of a layer.

    As the authors' code (``softmax3d`` in resnet_swag.py) does: all channels and positions of
    the layer jointly, on the raw activations divided by an absolute temperature. Residual
    networks' activations are peaky, and their Gram matrices are dominated by a few large
    values; the softmax turns them into a distribution whose entropy the temperature sets.
    The result is multiplied by the number of elements N, so a flat layer is all ones rather
    than 1/N: float32 keeps its precision, and :class:`StyleTransferLoss` measures SWAG's terms
    relative to their targets, so the factor does not reach the loss.
    """
    flat = tf.reshape(features, [1, -1])
    elements = tf.cast(tf.shape(flat)[1], flat.dtype)
    return tf.reshape(tf.nn.softmax(flat / temperature, axis=-1) * elements, tf.shape(features))


def _mean_and_centred(features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    flat = tf.reshape(features, [-1, tf.shape(features)[-1]])
    mean = tf.reduce_mean(flat, axis=0)
    return mean, flat - mean


def _covariance(centred: tf.Tensor) -> tf.Tensor:
    return tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(centred)[0], centred.dtype)


class GramStyle:
    """The notebook's style statistic: Gram matrices, compared by mean squared difference."""

    def target(self, features: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return (tf.constant(gram_matrix(features)),)

    def loss(self, features: tf.Tensor, target: tuple[tf.Tensor, ...]) -> tf.Tensor:
        return style_loss(features, target[0])


class MeanStdStyle:
    """Per-channel mean and standard deviation, as in AdaIN: cheap, and blind to correlations."""

    def target(self, features: tf.Tensor) -> tuple[tf.Tensor, ...]:
        mean, centred = _mean_and_centred(features)
        return tf.constant(mean), tf.constant(tf.sqrt(tf.reduce_mean(tf.square(centred), axis=0) + 1e-8))

    def loss(self, features: tf.Tensor, target: tuple[tf.Tensor, ...]) -> tf.Tensor:
        mean, centred = _mean_and_centred(features)
        std = tf.sqrt(tf.reduce_mean(tf.square(centred), axis=0) + 1e-8)
        return tf.reduce_mean(tf.square(mean - target[0])) + tf.reduce_mean(tf.square(std - target[1]))


def _psd_eigh(matrix: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Eigenvalues, eigenvectors and numerical-rank tolerance of a symmetric PSD matrix.

    Eigenvalues below ``size * float eps * largest`` are rounding noise of a rank-deficient
    matrix (the usual numerical-rank cut, as numpy's ``matrix_rank`` makes); they are set to 0,
    since the square roots of a few dozen noise values add up to a visible error.
    """
    values, vectors = tf.linalg.eigh(matrix)
    size = tf.cast(tf.shape(matrix)[0], matrix.dtype)
    tolerance = size * float(np.finfo(matrix.dtype.as_numpy_dtype).eps) * tf.reduce_max(tf.abs(values)) + 1e-30
    return tf.where(values > tolerance, values, 0.0), vectors, tolerance


@tf.custom_gradient
def trace_sqrt(matrix: tf.Tensor) -> tf.Tensor:
    """``tr(M^1/2)`` of a symmetric positive semi-definite matrix, with a bounded slope.

    The value is the sum of square roots of the eigenvalues, with no floor that would shift it.
    Its gradient is ``M^-1/2 / 2``, unbounded along eigenvalues near 0 (rank-deficient
    covariances: fewer positions than channels, as in deep layers of small images), and an
    unbounded slope makes L-BFGS's line search fail. So only the gradient caps
    ``1 / sqrt(eigenvalue)`` at its value for the numerical-rank tolerance: the descent
    direction is kept and the reported distance stays unbiased.
    """
    values, vectors, tolerance = _psd_eigh(matrix)

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        slopes = 0.5 / tf.sqrt(tf.maximum(values, tolerance))
        return upstream * tf.matmul(vectors * slopes, vectors, transpose_b=True)

    return tf.reduce_sum(tf.sqrt(values)), gradient


class WassersteinStyle:
    """2-Wasserstein distance between Gaussian fits of the features (as style-transfer-pytorch does).

    ``|mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr((S_t^1/2 S S_t^1/2)^1/2)``, divided by the number
    of channels. The target's square root is computed once; the trace of the other one goes
    through :func:`trace_sqrt`, exact in value and bounded in slope. Covariances and roots are in
    float64: the cross matrix squares the covariance's condition number, and in float32 the
    small eigenvalues' rounding alone was 4e-4 of the distance. The distance is not clamped at 0:
    a clamp has no gradient, so a value pushed below 0 would end the run while the images differ.
    """

    def target(self, features: tf.Tensor) -> tuple[tf.Tensor, ...]:
        mean, centred = _mean_and_centred(tf.cast(features, tf.float64))
        cov = _covariance(centred)
        values, vectors, _ = _psd_eigh(cov)
        root = tf.matmul(vectors * tf.sqrt(values), vectors, transpose_b=True)
        return tf.constant(mean), tf.constant(tf.linalg.trace(cov)), tf.constant(root)

    def loss(self, features: tf.Tensor, target: tuple[tf.Tensor, ...]) -> tf.Tensor:
        target_mean, target_trace, target_root = target
        mean, centred = _mean_and_centred(tf.cast(features, tf.float64))
        cov = _covariance(centred)
        cross = tf.matmul(target_root, tf.matmul(cov, target_root))
        cross = (cross + tf.transpose(cross)) / 2
        distance = (
            tf.reduce_sum(tf.square(mean - target_mean)) + tf.linalg.trace(cov) + target_trace - 2 * trace_sqrt(cross)
        )
        return tf.cast(distance / tf.cast(tf.shape(cov)[0], tf.float64), features.dtype)


STYLE_LOSSES = {"gram": GramStyle(), "wasserstein": WassersteinStyle(), "meanstd": MeanStdStyle()}


@dataclass(frozen=True)
class WeightedLayer:
    """A Keras layer name and its relative weight within its term."""

    layer: str
    weight: float


class StyleTransferLoss:
    """content_weight * content + style_weight * style + tv_weight * TV for one content image.

    Targets (content activations, style statistics) are computed once here, never per step.
    Within a term, layers are averaged with their relative weights: ``sum(w L) / sum(w)``,
    which for equal weights is the notebook's ``1 / number of layers``. Several style images
    each get their own targets; their losses are mixed by ``style_blend`` (normalised).

    With SWAG, each layer's term is divided by a constant: a style layer's by its value for
    the content photo, a content layer's by its value for a blank feature map, so the photo
    starts at style 1 and content 0. The paper weights its layers' raw Gram differences, whose
    sizes depend on temperature, depth and image size by orders of magnitude (its style weight
    was 1e17); relative terms make one weight mean the same across temperatures, networks and
    sizes. (A softmax's flat part makes every Gram matrix near all-ones, so measuring style
    relative to a blank map, whose Gram is 0, left almost nothing to optimise.)
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        content_image: tf.Tensor,
        style_images: Sequence[tf.Tensor],
        content_layers: Sequence[WeightedLayer],
        style_layers: Sequence[WeightedLayer],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        style_loss: str = "gram",
        swag_temperature: float = 0.0,
        style_blend: Sequence[float] = (),
    ):
        self.extractor = extractor
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        self.statistic = STYLE_LOSSES[style_loss]
        blend = list(style_blend) or [1.0] * len(style_images)
        self.blend = [w / sum(blend) for w in blend]
        self.swag_temperature = float(swag_temperature)
        content_features = self.features(content_image)
        self.content_targets = {s.layer: tf.constant(content_features[s.layer]) for s in self.content_layers}
        self.content_scales = {name: self._scale(content_loss, tf.zeros_like(t), t) for name, t in self.content_targets.items()}
        self.style_targets, self.style_scales = [], []
        for image in style_images:
            style_features = self.features(image)
            targets = {s.layer: self.statistic.target(style_features[s.layer]) for s in self.style_layers}
            self.style_targets.append(targets)
            self.style_scales.append(
                {name: self._scale(self.statistic.loss, content_features[name], t) for name, t in targets.items()}
            )

    def _scale(self, term: Callable[[tf.Tensor, object], tf.Tensor], start: tf.Tensor, target: object) -> float:
        """What a layer's term is divided by: 1, or with SWAG the term at ``start``: the photo for
        style, a blank feature map for content (the photo scores 1 and 0)."""
        if self.swag_temperature <= 0:
            return 1.0
        return max(float(term(start, target)), 1e-30)

    def features(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """The extractor's activations, smoothed by SWAG when it is on."""
        features = self.extractor(image)
        if self.swag_temperature > 0:
            features = {name: swag(f, self.swag_temperature) for name, f in features.items()}
        return features

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """Loss terms and their weighted ``total`` for a batch of one image in network space."""
        features = self.features(image)
        content = _weighted_mean([
            (s.weight, content_loss(features[s.layer], self.content_targets[s.layer]) / self.content_scales[s.layer])
            for s in self.content_layers
        ])
        style = tf.add_n([
            share * _weighted_mean([
                (s.weight, self.statistic.loss(features[s.layer], targets[s.layer]) / scales[s.layer])
                for s in self.style_layers
            ])
            for share, targets, scales in zip(self.blend, self.style_targets, self.style_scales)
        ])  # fmt: skip
        cw, sw, tw = self.weights
        # Reported either way; differentiated only when it counts: TV's gradient (strided-slice
        # gradients over the whole image) measured 5% of a 384x512 step.
        tv = total_variation(image if tw > 0 else tf.stop_gradient(image))
        return {"total": cw * content + sw * style + tw * tv, "content": content, "style": style, "tv": tv}


def _weighted_mean(terms: list[tuple[float, tf.Tensor]]) -> tf.Tensor:
    if not terms:
        return tf.constant(0.0)
    return tf.add_n([w * t for w, t in terms]) / sum(w for w, _ in terms)
