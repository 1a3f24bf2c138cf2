"""Loss terms of Gatys-style transfer, and their weighted sum with targets fixed once.

The term functions are the notebook's (and the tf.keras tutorial's) definitions:
content is the mean squared feature difference; style compares Gram matrices divided by
the number of spatial positions; total variation penalises neighbouring-pixel differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._tf import quiet_tensorflow
from .backbones import FeatureExtractor

if TYPE_CHECKING:
    from PIL import Image

    from .config import Config

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


class Moments:
    """Count, sum and sum of outer products of a layer's feature vectors, added piece by piece.

    Every style statistic here (Gram matrix, mean and std, mean and covariance) is a function of
    these three sums, so the statistic of a style image too large for one forward pass is the
    same whether its features arrive whole or tile by tile. With SWAG the features are
    ``exp(F / T)`` divided by one sum over the whole layer; the sums are kept relative to the
    largest ``F / T`` seen so far, and the softmax's normaliser is applied at the end.
    """

    def __init__(self, temperature: float = 0.0):
        self.temperature = temperature
        self.count = 0
        self.elements = 0
        self.total: np.ndarray | None = None  # sum of feature vectors (float64)
        self.outer: np.ndarray | None = None  # sum of their outer products (float64)
        self.exp_sum = 0.0  # SWAG: sum of exp(F / T - shift) over every element
        self.shift = -math.inf

    @classmethod
    def of(cls, features: tf.Tensor, temperature: float = 0.0) -> Moments:
        """The moments of one whole feature map."""
        moments = cls(temperature)
        moments.add(features)
        return moments

    def add(self, features: tf.Tensor) -> None:
        """Add the feature vectors of ``(..., C)`` features (one tile's interior, or a whole image)."""
        flat = tf.reshape(tf.cast(features, tf.float64), [-1, features.shape[-1]])
        if self.temperature > 0:
            logits = flat / self.temperature
            top = float(tf.reduce_max(logits))
            if top > self.shift and self.total is not None:  # rescale what was summed to the new shift
                factor = math.exp(self.shift - top)
                self.total, self.outer, self.exp_sum = (
                    self.total * factor,
                    self.outer * factor**2,
                    self.exp_sum * factor,
                )
            self.shift = max(self.shift, top)
            flat = tf.exp(logits - self.shift)
            self.exp_sum += float(tf.reduce_sum(flat))
        total = tf.reduce_sum(flat, axis=0).numpy()
        outer = tf.matmul(flat, flat, transpose_a=True).numpy()
        self.total = total if self.total is None else self.total + total
        self.outer = outer if self.outer is None else self.outer + outer
        self.count += int(flat.shape[0])
        self.elements += int(flat.shape[0]) * int(flat.shape[1])

    def mean_and_second(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean feature vector and the mean outer product (the Gram matrix), float64."""
        factor = self.elements / self.exp_sum if self.temperature > 0 else 1.0  # SWAG's softmax x N
        return self.total * factor / self.count, self.outer * factor**2 / self.count


class GramStyle:
    """The notebook's style statistic: Gram matrices, compared by mean squared difference."""

    def target(self, moments: Moments) -> tuple[tf.Tensor, ...]:
        _, second = moments.mean_and_second()
        return (tf.constant(second, tf.float32),)

    def loss(self, features: tf.Tensor, target: tuple[tf.Tensor, ...]) -> tf.Tensor:
        return style_loss(features, target[0])


class MeanStdStyle:
    """Per-channel mean and standard deviation, as in AdaIN: cheap, and blind to correlations."""

    def target(self, moments: Moments) -> tuple[tf.Tensor, ...]:
        mean, second = moments.mean_and_second()
        variance = np.maximum(np.diag(second) - mean**2, 0.0)
        return tf.constant(mean, tf.float32), tf.constant(np.sqrt(variance + 1e-8), tf.float32)

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

    def target(self, moments: Moments) -> tuple[tf.Tensor, ...]:
        mean, second = moments.mean_and_second()
        cov = tf.constant(second - np.outer(mean, mean))
        values, vectors, _ = _psd_eigh((cov + tf.transpose(cov)) / 2)
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


Targets = Sequence[dict[str, tuple[tf.Tensor, ...]]]


@dataclass(frozen=True)
class Terms:
    """What a loss adds up: its layers, the weights of its terms, and how style is compared.

    ``temporal`` adds the video term (:class:`TemporalTerm`); ``pixel_scale`` is the network
    input's units per pixel level, so that term is in pixel units whatever the preprocessing.
    """

    content_layers: Sequence[WeightedLayer]
    style_layers: Sequence[WeightedLayer]
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    style_loss: str = "gram"
    swag_temperature: float = 0.0
    style_blend: Sequence[float] = ()
    temporal: bool = False
    pixel_scale: float = 1.0

    @classmethod
    def of(cls, cfg: Config, extractor: FeatureExtractor, temporal: bool = False) -> Terms:
        """``cfg``'s terms, its layers named as ``extractor`` resolved them."""
        return cls(
            [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.content_layers],
            [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.style_layers],
            cfg.content_weight,
            cfg.style_weight,
            cfg.tv_weight,
            cfg.style_loss,
            cfg.swag,
            cfg.style_blend,
            temporal,
            float(np.mean(extractor.backbone.preprocessing.std)),
        )


class TemporalTerm:
    """Ruder et al.'s temporal term: the squared difference, in pixel units, from the previous
    stylized frame warped to this one, on the pixels where the flow is trusted (``mask``).

    Its target, mask and weight are variables: every frame of a clip shares one compiled step.
    """

    def __init__(self, shape: Sequence[int], pixel_scale: float):
        self.pixel_scale = pixel_scale
        self.target = tf.Variable(tf.zeros((1, *shape, 3)), trainable=False)
        self.mask = tf.Variable(tf.zeros((1, *shape, 1)), trainable=False)
        self.weight = tf.Variable(0.0, trainable=False)

    def hold(self, target: np.ndarray | None, mask: np.ndarray | None = None, weight: float = 0.0) -> None:
        """Aim at ``target`` (network space, HxWx3) on ``mask`` (HxWx1) with ``weight``; None: off."""
        self.weight.assign(weight if target is not None else 0.0)
        self.mask.assign(
            np.zeros(tuple(self.mask.shape), np.float32) if mask is None else mask[None].astype(np.float32)
        )
        if target is not None:
            self.target.assign(target[None])

    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        difference = (image - self.target) * self.pixel_scale
        return tf.reduce_sum(self.mask * tf.square(difference)) / (3 * tf.reduce_sum(self.mask) + 1e-6)


class StyleTransferLoss:
    """content_weight * content + style_weight * style + tv_weight * TV for one content image
    (+ the temporal term's weight x temporal, for a video frame).

    Targets (content activations, style statistics) are computed once here, never per step.
    Within a term, layers are averaged with their relative weights: ``sum(w L) / sum(w)``,
    which for equal weights is the notebook's ``1 / number of layers``. Several style images
    each get their own targets; their losses are mixed by ``style_blend`` (normalised).
    Style targets can come ready-made (:func:`style_targets`): a tiled run computes them from
    the whole style image once and shares them between tiles, and :meth:`set_content` gives
    the same loss, and so the same compiled step, the next tile's content; :meth:`retarget`
    gives it the next scale's content and style images.

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
        terms: Terms,
        content_image: tf.Tensor,
        style_images: Sequence[tf.Tensor] = (),
        targets: Targets | None = None,
    ):
        self.extractor = extractor
        self.content_layers = list(terms.content_layers)
        self.style_layers = list(terms.style_layers)
        self.weights = (float(terms.content_weight), float(terms.style_weight), float(terms.tv_weight))
        self.statistic = STYLE_LOSSES[terms.style_loss]
        self.swag_temperature = float(terms.swag_temperature)
        self.style_targets: list[dict[str, tuple[tf.Variable, ...]]] = []
        self.content_targets: dict[str, tf.Variable] = {}
        self.content_scales: dict[str, tf.Variable] = {}
        self.style_scales: list[dict[str, tf.Variable]] = []
        self.retarget(content_image, style_images, targets)
        blend = list(terms.style_blend) or [1.0] * len(self.style_targets)
        self.blend = [w / sum(blend) for w in blend]
        self.temporal = TemporalTerm(content_image.shape[1:3], terms.pixel_scale) if terms.temporal else None

    def retarget(
        self, content_image: tf.Tensor, style_images: Sequence[tf.Tensor] = (), targets: Targets | None = None
    ) -> None:
        """Aim at a content image of any size and new style images (or their ready-made ``targets``).

        The next scale of a multi-scale run: the targets live in variables the compiled step
        reads, so the step compiled for one scale serves the next. The number of style images
        stays what it was.
        """
        layers = [s.layer for s in self.style_layers]
        if targets is None:
            targets = [
                style_targets(self.extractor, image, layers, self.statistic, self.swag_temperature)
                for image in style_images
            ]
        if not self.style_targets:
            self.style_targets = [
                {name: tuple(tf.Variable(t, trainable=False) for t in target) for name, target in d.items()}
                for d in targets
            ]
        else:
            for variables, d in zip(self.style_targets, targets, strict=True):
                for name, target in d.items():
                    for variable, t in zip(variables[name], target):
                        variable.assign(t)
        self.set_content(content_image)

    def set_content(self, content_image: tf.Tensor) -> None:
        """Aim at a new content image (the next tile or frame; any size): its targets and SWAG scales."""
        content_features = self.features(content_image)
        fresh = not self.content_targets
        values = {name: content_features[name] for name in {s.layer for s in self.content_layers}}
        scales = {name: self._scale(content_loss, tf.zeros_like(t), t) for name, t in values.items()}
        style_scales = [
            {name: self._scale(self.statistic.loss, content_features[name], t) for name, t in targets.items()}
            for targets in self.style_targets
        ]
        if fresh:  # a content target's shape is the image's: any size may follow
            self.content_targets = {
                name: tf.Variable(t, trainable=False, shape=tf.TensorShape([None] * t.shape.rank))
                for name, t in values.items()
            }
            self.content_scales = {name: tf.Variable(v, trainable=False) for name, v in scales.items()}
            self.style_scales = [
                {name: tf.Variable(v, trainable=False) for name, v in layer.items()} for layer in style_scales
            ]
            return
        for name, t in values.items():
            self.content_targets[name].assign(t)
            self.content_scales[name].assign(scales[name])
        for variables, layer in zip(self.style_scales, style_scales):
            for name, v in layer.items():
                variables[name].assign(v)

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
        content = _weighted_mean(
            [
                (
                    s.weight,
                    content_loss(features[s.layer], self.content_targets[s.layer]) / self.content_scales[s.layer],
                )
                for s in self.content_layers
            ]
        )
        style = tf.add_n(
            [
                share
                * _weighted_mean(
                    [
                        (s.weight, self.statistic.loss(features[s.layer], targets[s.layer]) / scales[s.layer])
                        for s in self.style_layers
                    ]
                )
                for share, targets, scales in zip(self.blend, self.style_targets, self.style_scales)
            ]
        )
        cw, sw, tw = self.weights
        # Reported either way; differentiated only when it counts: TV's gradient (strided-slice
        # gradients over the whole image) is a noticeable share of a step.
        tv = total_variation(image if tw > 0 else tf.stop_gradient(image))
        losses = {"total": cw * content + sw * style + tw * tv, "content": content, "style": style, "tv": tv}
        if self.temporal is not None:
            losses["temporal"] = self.temporal(image)
            losses["total"] = losses["total"] + self.temporal.weight * losses["temporal"]
        return losses


def style_targets(
    extractor: FeatureExtractor,
    image: tf.Tensor,
    layers: Sequence[str],
    statistic: GramStyle | MeanStdStyle | WassersteinStyle,
    swag_temperature: float = 0.0,
    tile: int | None = None,
) -> dict[str, tuple[tf.Tensor, ...]]:
    """``statistic``'s target for each layer, from a style image (batch of one, network space).

    With ``tile`` (px, a multiple of the network's total stride) the image goes through the
    network in tiles of that size, each with a margin of context around it, and each tile adds
    the features of its own part to the layer's :class:`Moments`: an image far larger than one
    forward pass fits gets the same statistic, up to the network's padding at the margins.
    """
    from .backbones.extractor import SIZE_MULTIPLE

    layers = list(dict.fromkeys(layers))
    moments = {name: Moments(swag_temperature) for name in layers}
    height, width = int(image.shape[1]), int(image.shape[2])
    step = tile or max(height, width)
    margin = 0 if tile is None else 2 * SIZE_MULTIPLE
    strides = extractor.strides if tile else {}
    for top in range(0, height, step):
        for left in range(0, width, step):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, top + step + margin), min(width, left + step + margin)
            features = extractor(image[:, y0:y1, x0:x1, :])
            for name in layers:
                f, stride = features[name], strides.get(name, 1)
                rows = slice((top - y0) // stride, -(-(min(height, top + step) - y0) // stride))
                cols = slice((left - x0) // stride, -(-(min(width, left + step) - x0) // stride))
                moments[name].add(f[:, rows, cols, :] if tile else f)
    return {name: statistic.target(m) for name, m in moments.items()}


def _weighted_mean(terms: list[tuple[float, tf.Tensor]]) -> tf.Tensor:
    if not terms:
        return tf.constant(0.0)
    return tf.add_n([w * t for w, t in terms]) / sum(w for w, _ in terms)


def objective(
    cfg: Config,
    extractor: FeatureExtractor,
    content: Image.Image,
    styles: Sequence[Image.Image],
    targets: Targets | None = None,
    temporal: bool = False,
) -> StyleTransferLoss:
    """``cfg``'s loss for one content image and its style images, all already at their sizes
    (or, with ``targets``, style statistics computed beforehand: a tiled scale's)."""
    styles_in = [network_input(extractor, s) for s in styles]
    return StyleTransferLoss(
        extractor, Terms.of(cfg, extractor, temporal), network_input(extractor, content), styles_in, targets
    )


def network_input(extractor: FeatureExtractor, image: Image.Image | np.ndarray) -> tf.Tensor:
    """An RGB image (PIL, or an array of 0-255 values) as the extractor's network takes it:
    preprocessed, a batch of one."""
    return tf.constant(extractor.backbone.preprocessing.forward(np.asarray(image))[None])
