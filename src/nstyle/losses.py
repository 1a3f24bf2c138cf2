"""Loss terms of Gatys-style transfer, and their weighted sum with targets fixed once.

The term functions are the notebook's (and the tf.keras tutorial's) definitions:
content is the mean squared feature difference; style compares Gram matrices divided by
the number of spatial positions; total variation penalises neighbouring-pixel differences.
They are written in ``keras.ops``, so they run on every Keras backend (:mod:`nstyle.backends`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backbones import FeatureExtractor
from .backends import load_keras, ops
from .regions import Regions, resize
from .wrap import roll_offset

if TYPE_CHECKING:
    from PIL import Image

    from .config import Config

keras = load_keras()
K = keras.ops
backend = ops()

Tensor = Any  # a tensor of the running backend


def _upstream(args: tuple, upstream: Tensor | None) -> Tensor:
    """A custom gradient's upstream gradient: the last argument on TensorFlow and JAX, a keyword on PyTorch."""
    return args[-1] if upstream is None else upstream


@K.custom_gradient
def gram_matrix(features: Tensor) -> Tensor:
    """Channel co-occurrence ``F^T F / (H W)`` of ``(..., H, W, C)`` features.

    Dividing by the number of positions (not by C too) keeps the notebook's scale, so its
    style weight of 1e6 means the same thing here. The gradient is written out because the
    generic one differentiates ``F^T F`` as a product of two different matrices, two matmuls
    where ``F (dG + dG^T) / (H W)`` needs one, and Gram matrices are a large share of a step.
    bfloat16 features (a bfloat16 network's own) are multiplied in bfloat16, on the CPU's or
    GPU's bf16 units, which accumulate in float32; the Gram matrix comes back float32.
    """
    shape = K.shape(features)
    flat = K.reshape(features, (-1, shape[-1]))
    positions = K.cast(K.shape(flat)[0], "float32")
    gram = K.cast(backend.matmul_tn(flat, flat), "float32") / positions

    def gradient(*args: Tensor, upstream: Tensor | None = None) -> Tensor:
        upstream = _upstream(args, upstream)
        if keras.backend.standardize_dtype(flat.dtype) == "float32":
            return K.reshape(K.matmul(flat, upstream + K.transpose(upstream)) / positions, shape)
        both = K.cast((upstream + K.transpose(upstream)) / positions, flat.dtype)
        return K.reshape(K.matmul(flat, both), shape)

    return gram, gradient


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference of activations."""
    return K.mean(K.square(features - target))


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared difference between this image's Gram matrix and the target's."""
    return K.mean(K.square(gram_matrix(features) - target_gram))


def total_variation(image: Tensor, wrap: bool = False) -> Tensor:
    """Mean squared difference of horizontally plus vertically neighbouring pixels.

    Squared rather than absolute differences keep the loss smooth, which L-BFGS needs. With
    ``wrap`` the last column neighbours the first and the last row the first: a tileable
    picture is smoothed across its wrap as inside, or the seam would be the one place TV leaves sharp.
    """
    if wrap:
        dy, dx = image - K.roll(image, 1, axis=1), image - K.roll(image, 1, axis=2)
    else:
        dy = image[:, 1:, :, :] - image[:, :-1, :, :]
        dx = image[:, :, 1:, :] - image[:, :, :-1, :]
    return K.mean(K.square(dy)) + K.mean(K.square(dx))


def swag(features: Tensor, temperature: float) -> Tensor:
    """SWAG's smoothing (Wang, Li & Vasconcelos, CVPR 2021): one softmax over every element of a layer.

    As the authors' code (``softmax3d`` in resnet_swag.py) does: all channels and positions of
    the layer jointly, on the raw activations divided by an absolute temperature. Residual
    networks' activations are peaky, and their Gram matrices are dominated by a few large
    values; the softmax turns them into a distribution whose entropy the temperature sets.
    The result is multiplied by the number of elements N, so a flat layer is all ones rather
    than 1/N: float32 keeps its precision, and :class:`StyleTransferLoss` measures SWAG's terms
    relative to their targets, so the factor does not reach the loss.
    """
    flat = K.reshape(features, (1, -1))
    elements = K.cast(K.shape(flat)[1], flat.dtype)
    return K.reshape(K.softmax(flat / temperature, axis=-1) * elements, K.shape(features))


def _mean_and_centred(features: Tensor) -> tuple[Tensor, Tensor]:
    flat = K.reshape(features, (-1, K.shape(features)[-1]))
    mean = K.mean(flat, axis=0)
    return mean, flat - mean


def _covariance(centred: Tensor) -> Tensor:
    return backend.matmul_tn(centred, centred) / K.cast(K.shape(centred)[0], centred.dtype)


class Moments:
    """Count, sum and sum of outer products of a layer's feature vectors, added piece by piece.

    Every style statistic here (Gram matrix, mean and std, mean and covariance) is a function of
    these three sums, so the statistic of a style image too large for one forward pass is the
    same whether its features arrive whole or tile by tile. With SWAG the features are
    ``exp(F / T)`` divided by one sum over the whole layer; the sums are kept relative to the
    largest ``F / T`` seen so far, and the softmax's normaliser is applied at the end. The sums
    are NumPy float64, whatever the backend.
    """

    def __init__(self, temperature: float = 0.0, keep_values: bool = False):
        self.temperature = temperature
        self.keep_values = keep_values  # the histogram statistic's: a sample of the feature vectors themselves
        self.values: list[np.ndarray] = []
        self.count = 0
        self.elements = 0
        self.total: np.ndarray | None = None  # sum of feature vectors (float64)
        self.outer: np.ndarray | None = None  # sum of their outer products (float64)
        self.exp_sum = 0.0  # SWAG: sum of exp(F / T - shift) over every element
        self.shift = -math.inf

    @classmethod
    def of(cls, features: Tensor, temperature: float = 0.0, keep_values: bool = False) -> Moments:
        """The moments of one whole feature map."""
        moments = cls(temperature, keep_values)
        moments.add(features)
        return moments

    def add(self, features: Tensor) -> None:
        """Add the feature vectors of ``(..., C)`` features (one tile's interior, or a whole image)."""
        array = np.asarray(backend.to_numpy(features), np.float64)
        flat = array.reshape(-1, array.shape[-1])
        if self.keep_values:  # evenly spaced rows, at most VALUE_SAMPLE per piece: quantiles need no more
            self.values.append(flat[:: max(1, flat.shape[0] // VALUE_SAMPLE)].astype(np.float32))
        if self.temperature > 0:
            logits = flat / self.temperature
            top = float(logits.max())
            if top > self.shift and self.total is not None:  # rescale what was summed to the new shift
                factor = math.exp(self.shift - top)
                self.total, self.outer, self.exp_sum = (
                    self.total * factor,
                    self.outer * factor**2,
                    self.exp_sum * factor,
                )
            self.shift = max(self.shift, top)
            flat = np.exp(logits - self.shift)
            self.exp_sum += float(flat.sum())
        total, outer = flat.sum(axis=0), flat.T @ flat
        self.total = total if self.total is None else self.total + total
        self.outer = outer if self.outer is None else self.outer + outer
        self.count += flat.shape[0]
        self.elements += flat.size

    def mean_and_second(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean feature vector and the mean outer product (the Gram matrix), float64."""
        factor = self.elements / self.exp_sum if self.temperature > 0 else 1.0  # SWAG's softmax x N
        return self.total * factor / self.count, self.outer * factor**2 / self.count

    def quantiles(self, count: int) -> np.ndarray:
        """Each channel's values at ``count`` evenly spaced levels, ``(count, C)`` float32."""
        values = np.concatenate(self.values)
        levels = (np.arange(count) + 0.5) / count
        return np.quantile(values, levels, axis=0).astype(np.float32)


def _float32(array: np.ndarray) -> Tensor:
    return K.convert_to_tensor(np.asarray(array, np.float32))


def _float64(array: np.ndarray | float) -> Tensor:
    return K.convert_to_tensor(np.asarray(array, np.float64), "float64")


def _weighted(features: Tensor, weights: Tensor, dtype: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, C)`` features, ``(N, 1)`` weights (a region's, :mod:`nstyle.regions`) and their sum."""
    flat = K.cast(K.reshape(features, (-1, K.shape(features)[-1])), dtype)
    w = K.cast(K.reshape(weights, (-1, 1)), dtype)
    return flat, w, K.sum(w) + 1e-6


class GramStyle:
    """The notebook's style statistic: Gram matrices, compared by mean squared difference.

    In a region, the Gram matrix is the weighted mean outer product ``F^T diag(w) F / sum(w)``:
    the region's own statistic, whatever its size.
    """

    needs_values = False

    def target(self, moments: Moments) -> tuple[Tensor, ...]:
        _, second = moments.mean_and_second()
        return (_float32(second),)

    def loss(self, features: Tensor, target: tuple[Tensor, ...], weights: Tensor | None = None) -> Tensor:
        if weights is None:
            return style_loss(features, target[0])
        flat, w, total = _weighted(features, weights, keras.backend.standardize_dtype(features.dtype))
        positions = K.cast(K.shape(flat)[0], "float32")
        gram = gram_matrix(flat * K.sqrt(w)) * (positions / K.cast(total, "float32"))
        return K.mean(K.square(gram - target[0]))


class MeanStdStyle:
    """Per-channel mean and standard deviation, as in AdaIN: cheap, and blind to correlations."""

    needs_values = False

    def target(self, moments: Moments) -> tuple[Tensor, ...]:
        mean, second = moments.mean_and_second()
        variance = np.maximum(np.diag(second) - mean**2, 0.0)
        return _float32(mean), _float32(np.sqrt(variance + 1e-8))

    def loss(self, features: Tensor, target: tuple[Tensor, ...], weights: Tensor | None = None) -> Tensor:
        if weights is None:
            mean, centred = _mean_and_centred(features)
            variance = K.mean(K.square(centred), axis=0)
        else:
            flat, w, total = _weighted(features, weights, "float32")
            mean = K.sum(w * flat, axis=0) / total
            variance = K.sum(w * K.square(flat - mean), axis=0) / total
        std = K.sqrt(variance + 1e-8)
        return K.mean(K.square(mean - target[0])) + K.mean(K.square(std - target[1]))


def _at_levels(quantiles: Tensor, levels: Tensor) -> Tensor:
    """``quantiles`` (Q, C: each channel's values at Q evenly spaced levels) read at ``levels``
    (N, C, in 0..1) by linear interpolation."""
    count = K.cast(K.shape(quantiles)[0], "float32")
    position = K.clip(levels * count - 0.5, 0.0, count - 1)
    low = K.floor(position)
    frac = position - low
    low = K.cast(low, "int32")
    high = K.minimum(low + 1, K.cast(count, "int32") - 1)
    below = K.take_along_axis(quantiles, low, axis=0)
    return below + frac * (K.take_along_axis(quantiles, high, axis=0) - below)


class HistogramStyle:
    """Risser, Wilmot & Barnes (2017): each channel's activations matched to the style's histogram.

    As their histogram loss: ``|O - R(O)|^2``, where ``R`` remaps each channel's activations
    onto the style's distribution (histogram matching), and ``R(O)`` is held fixed. Matching
    here is by sorting: the k-th smallest activation of a channel is remapped to the style's
    value at the same quantile, so the loss is the squared difference between the sorted
    activations and the style's quantiles, and the gradient goes through the sorted values to
    the activations they came from. The style's side is kept as :data:`QUANTILES` quantiles per
    channel, read at the image's own ranks by interpolation, so any sizes match. In a region,
    ranks are weighted: an activation's level is the share of the region's weight below it.
    """

    needs_values = True

    def target(self, moments: Moments) -> tuple[Tensor, ...]:
        return (_float32(moments.quantiles(QUANTILES)),)

    def loss(self, features: Tensor, target: tuple[Tensor, ...], weights: Tensor | None = None) -> Tensor:
        if weights is None:
            flat = K.cast(K.reshape(features, (-1, K.shape(features)[-1])), "float32")
            ordered = K.sort(flat, axis=0)
            ranks = K.cumsum(K.ones_like(ordered), axis=0)
            levels = (ranks - 0.5) / K.cast(K.shape(flat)[0], "float32")
            return K.mean(K.square(ordered - _at_levels(target[0], levels)))
        flat, w, total = _weighted(features, weights, "float32")
        order = K.argsort(K.stop_gradient(flat), axis=0)
        ordered = K.take_along_axis(flat, order, axis=0)
        shares = K.take_along_axis(K.broadcast_to(w, K.shape(flat)), order, axis=0)
        levels = (K.cumsum(shares, axis=0) - shares / 2) / total
        remapped = _at_levels(target[0], K.stop_gradient(levels))
        return K.sum(shares * K.square(ordered - remapped)) / (total * K.cast(K.shape(flat)[1], "float32"))


def _psd_eigh(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eigenvalues, eigenvectors and numerical-rank tolerance of a symmetric PSD matrix.

    Eigenvalues below ``size * float eps * largest`` are rounding noise of a rank-deficient
    matrix (the usual numerical-rank cut, as numpy's ``matrix_rank`` makes); they are set to 0,
    since the square roots of a few dozen noise values add up to a visible error.
    """
    values, vectors = K.eigh(matrix)
    size = K.cast(K.shape(matrix)[0], matrix.dtype)
    eps = float(np.finfo(keras.backend.standardize_dtype(matrix.dtype)).eps)
    tolerance = size * eps * K.max(K.abs(values)) + 1e-30
    return K.where(values > tolerance, values, K.zeros_like(values)), vectors, tolerance


@K.custom_gradient
def trace_sqrt(matrix: Tensor) -> Tensor:
    """``tr(M^1/2)`` of a symmetric positive semi-definite matrix, with a bounded slope.

    The value is the sum of square roots of the eigenvalues, with no floor that would shift it.
    Its gradient is ``M^-1/2 / 2``, unbounded along eigenvalues near 0 (rank-deficient
    covariances: fewer positions than channels, as in deep layers of small images), and an
    unbounded slope makes L-BFGS's line search fail. So only the gradient caps
    ``1 / sqrt(eigenvalue)`` at its value for the numerical-rank tolerance: the descent
    direction is kept and the reported distance stays unbiased.
    """
    values, vectors, tolerance = _psd_eigh(matrix)

    def gradient(*args: Tensor, upstream: Tensor | None = None) -> Tensor:
        slopes = 0.5 / K.sqrt(K.maximum(values, tolerance))
        return _upstream(args, upstream) * backend.matmul(vectors * slopes, K.transpose(vectors))

    return K.sum(K.sqrt(values)), gradient


class WassersteinStyle:
    """2-Wasserstein distance between Gaussian fits of the features (as style-transfer-pytorch does).

    ``|mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr((S_t^1/2 S S_t^1/2)^1/2)``, divided by the number
    of channels. The target's square root is computed once; the trace of the other one goes
    through :func:`trace_sqrt`, exact in value and bounded in slope. Covariances and roots are in
    float64: the cross matrix squares the covariance's condition number, and in float32 the
    small eigenvalues' rounding alone was a visible share of the distance. The distance is not
    clamped at 0: a clamp has no gradient, so a value pushed below 0 would end the run while the
    images differ.
    """

    def target(self, moments: Moments) -> tuple[Tensor, ...]:
        mean, second = moments.mean_and_second()
        cov = second - np.outer(mean, mean)
        values, vectors, _ = _psd_eigh(_float64((cov + cov.T) / 2))
        values, vectors = backend.to_numpy(values), backend.to_numpy(vectors)
        root = (vectors * np.sqrt(values)) @ vectors.T
        return _float64(mean), _float64(np.trace(cov)), _float64(root)

    needs_values = False

    def loss(self, features: Tensor, target: tuple[Tensor, ...], weights: Tensor | None = None) -> Tensor:
        target_mean, target_trace, target_root = target
        if weights is None:
            mean, centred = _mean_and_centred(K.cast(features, "float64"))
            cov = _covariance(centred)
        else:
            flat, w, total = _weighted(features, weights, "float64")
            mean = K.sum(w * flat, axis=0) / total
            centred = (flat - mean) * K.sqrt(w)
            cov = backend.matmul_tn(centred, centred) / total
        cross = backend.matmul(target_root, backend.matmul(cov, target_root))
        cross = (cross + K.transpose(cross)) / 2
        distance = K.sum(K.square(mean - target_mean)) + K.trace(cov) + target_trace - 2 * trace_sqrt(cross)
        return K.cast(distance / K.cast(K.shape(cov)[0], "float64"), features.dtype)


class CombinedStyle:
    """Several statistics' losses added with their weights (``gram+histogram``).

    Statistics differ in units by orders of magnitude (a Gram matrix is a square of activations,
    a histogram's values are activations), so each part after the first is first put in the
    first one's units: multiplied by the ratio of the two losses for a blank feature map, a
    number of the style's targets alone (the same for every tile and frame). A part's weight then
    means the same on every network: 1 makes the two weigh alike for a blank image. The target
    tuple holds each part's in turn, then those ratios.
    """

    def __init__(self, parts: Sequence[tuple[Statistic, float]]):
        self.parts = list(parts)
        self.needs_values = any(p.needs_values for p, _ in self.parts)

    def target(self, moments: Moments) -> tuple[Tensor, ...]:
        pieces = [part.target(moments) for part, _ in self.parts]
        channels = int(np.shape(backend.to_numpy(pieces[0][0]))[-1])
        blank = _float32(np.zeros((1, QUANTILES, 1, channels)))  # read at exactly the quantiles' levels
        at_blank = [
            max(float(backend.to_numpy(part.loss(blank, t))), 1e-30) for (part, _), t in zip(self.parts, pieces)
        ]
        ratios = _float32([at_blank[0] / value for value in at_blank])
        return (*(t for piece in pieces for t in piece), ratios)

    def loss(self, features: Tensor, target: tuple[Tensor, ...], weights: Tensor | None = None) -> Tensor:
        total, start, ratios = _float32(0.0), 0, target[-1]
        for i, (part, weight) in enumerate(self.parts):
            length = TARGET_LENGTHS[type(part)]
            term = K.cast(part.loss(features, target[start : start + length], weights), "float32")
            total = total + weight * ratios[i] * term
            start += length
        return total


Statistic = GramStyle | MeanStdStyle | WassersteinStyle | HistogramStyle | CombinedStyle
STYLE_LOSSES = {
    "gram": GramStyle(),
    "wasserstein": WassersteinStyle(),
    "meanstd": MeanStdStyle(),
    "histogram": HistogramStyle(),
}
TARGET_LENGTHS = {GramStyle: 1, WassersteinStyle: 3, MeanStdStyle: 2, HistogramStyle: 1}
#: Quantiles per channel kept of a style's activations for the histogram term.
QUANTILES = 1024
#: Feature vectors per style piece (an image, or a tile of one) sampled for those quantiles.
VALUE_SAMPLE = 65536


def statistic_of(style_loss: str, histogram_weight: float = 1.0) -> Statistic:
    """The statistic ``style_loss`` names: one of :data:`STYLE_LOSSES`, or several joined by '+'
    (the histogram's loss weighted by ``histogram_weight``)."""
    names = style_loss.split("+")
    if len(names) == 1:
        return STYLE_LOSSES[names[0]]
    return CombinedStyle([(STYLE_LOSSES[n], histogram_weight if n == "histogram" else 1.0) for n in names])


@dataclass(frozen=True)
class WeightedLayer:
    """A Keras layer name and its relative weight within its term."""

    layer: str
    weight: float


Targets = Sequence[dict[str, tuple[Tensor, ...]]]


@dataclass(frozen=True)
class Terms:
    """What a loss adds up: its layers, the weights of its terms, and how style is compared.

    ``temporal`` adds the video term (:func:`temporal_loss`); ``pixel_scale`` is the network
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
    histogram_weight: float = 1.0
    #: Style only in regions (:mod:`nstyle.regions`): each style's statistics weighted by its mask.
    masked: bool = False
    #: A picture that wraps (:mod:`nstyle.wrap`): "off", "wrap" (circular input padding) or "roll".
    tileable: str = "off"
    #: Seeds ``tileable = "roll"``'s offsets, so ``--seed`` decides them as it decides the noise start.
    seed: int = 0
    temporal: bool = False
    pixel_scale: float = 1.0
    #: Gram matrices of a bfloat16 network's features taken in bfloat16: for Adam; L-BFGS's line
    #: search needs exact sums (benchmarks/precision_parity.py measures the difference).
    native_gram: bool = True

    @classmethod
    def of(cls, cfg: Config, extractor: FeatureExtractor, temporal: bool = False, masked: bool = False) -> Terms:
        """``cfg``'s terms, its layers named as ``extractor`` resolved them (``masked``: in regions)."""
        tileable = cfg.tileable
        return cls(
            [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.content_layers],
            [WeightedLayer(extractor.resolved[s.name], s.weight) for s in cfg.style_layers],
            cfg.content_weight,
            cfg.style_weight,
            cfg.tv_weight,
            cfg.style_loss,
            cfg.swag,
            cfg.style_blend,
            cfg.histogram_weight,
            masked,
            tileable,
            cfg.seed or 0,
            temporal,
            float(np.mean(extractor.backbone.preprocessing.std)),
            native_gram=cfg.optimizer == "adam",
        )


def temporal_loss(image: Tensor, target: Tensor, mask: Tensor, pixel_scale: float) -> Tensor:
    """Ruder et al.'s temporal term: the squared difference, in pixel units, from the previous
    stylized frame warped to this one, on the pixels where the flow is trusted (``mask``)."""
    difference = (image - target) * pixel_scale
    return K.sum(mask * K.square(difference)) / (3 * K.sum(mask) + 1e-6)


class StyleTransferLoss:
    """content_weight * content + style_weight * style + tv_weight * TV for one content image
    (+ the temporal weight x the temporal term, for a video frame).

    Targets (content activations, style statistics) are computed once here, never per step,
    and kept in :attr:`state`, a nest of tensors that :meth:`evaluate` takes as an argument: a
    compiled step is a pure function of the image and the state, so one compiled step serves
    every tile of a size, every frame and (where the backend generalises over shapes) every
    scale, each call passing the state it aims at. Within a term, layers are averaged with
    their relative weights: ``sum(w L) / sum(w)``, which for equal weights is the notebook's
    ``1 / number of layers``. Several style images each get their own targets; their losses
    are mixed by ``style_blend`` (normalised). Style targets can come ready-made
    (:func:`style_targets`): a tiled run computes them from the whole style image once and
    shares them between tiles. :meth:`set_content` aims at the next tile's or frame's content,
    :meth:`retarget` at the next scale's content and style images.

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
        content_image: Tensor,
        style_images: Sequence[Tensor] = (),
        targets: Targets | None = None,
        regions: Regions | None = None,
    ):
        self.extractor = extractor
        self.masked = terms.masked
        self.tileable = terms.tileable
        self.wrap = wrap_margin(extractor, tuple(content_image.shape[1:3])) if terms.tileable == "wrap" else 0
        self._rolls = np.random.default_rng(terms.seed)
        self.content_layers = list(terms.content_layers)
        self.style_layers = list(terms.style_layers)
        self.weights = (float(terms.content_weight), float(terms.style_weight), float(terms.tv_weight))
        self.statistic = statistic_of(terms.style_loss, terms.histogram_weight)
        self.swag_temperature = float(terms.swag_temperature)
        self.pixel_scale = terms.pixel_scale
        # Gram matrices of a bfloat16 network's features are taken in bfloat16 (see gram_matrix);
        # other statistics, SWAG and float16 (whose range a Gram matrix can overflow) take float32.
        self.native_gram = (
            terms.native_gram
            and extractor.precision == "bfloat16"
            and terms.style_loss == "gram"
            and self.swag_temperature <= 0
        )
        self.state: dict[str, Any] = {}
        self.retarget(content_image, style_images, targets, regions)
        blend = list(terms.style_blend) or [1.0] * len(self.state["style"])
        self.blend = [w / sum(blend) for w in blend]
        if terms.temporal:
            self.hold(None, shape=tuple(content_image.shape[1:3]))

    def retarget(
        self,
        content_image: Tensor,
        style_images: Sequence[Tensor] = (),
        targets: Targets | None = None,
        regions: Regions | None = None,
    ) -> None:
        """Aim at a content image of any size and new style images (or their ready-made ``targets``),
        and, in a masked loss, the content's ``regions``.

        The number of style images stays what it was.
        """
        layers = [s.layer for s in self.style_layers]
        if targets is None:
            targets = [
                style_targets(self.extractor, image, layers, self.statistic, self.swag_temperature)
                for image in style_images
            ]
        if "style" in self.state and len(targets) != len(self.state["style"]):
            raise ValueError(f"{len(targets)} style images where the loss was built for {len(self.state['style'])}")
        self.state["style"] = [
            {name: tuple(K.convert_to_tensor(t) for t in target) for name, target in d.items()} for d in targets
        ]
        self.set_content(content_image, regions)

    def set_content(self, content_image: Tensor, regions: Regions | None = None) -> None:
        """Aim at a new content image (the next tile or frame; any size): its targets and SWAG
        scales, and in a masked loss its ``regions`` at the image's size (None: everywhere)."""
        features = self.features(content_image)
        self._shape = tuple(int(n) for n in content_image.shape[1:3])
        if self.masked:
            self._aim_regions(regions, features, tuple(content_image.shape[1:3]))
        values = {name: features[name] for name in {s.layer for s in self.content_layers}}
        self.state["content"] = values
        self.state["content_scale"] = {
            name: self._scale(content_loss, K.zeros_like(t), t) for name, t in values.items()
        }
        masks = self.state.get("style_mask") or [{}] * len(self.state["style"])
        self.state["style_scale"] = [
            {name: self._scale(self.statistic.loss, features[name], t, mask.get(name)) for name, t in targets.items()}
            for targets, mask in zip(self.state["style"], masks)
        ]

    def _aim_regions(self, regions: Regions | None, features: dict[str, Tensor], shape: tuple[int, int]) -> None:
        """Each style's weights at each style layer's resolution, and its share (:mod:`nstyle.regions`)."""
        count = len(self.state["style"])
        if regions is None:
            regions = Regions(np.ones((*shape, count), np.float32), (1.0,) * count)
        weights = regions.weights
        layers = {s.layer for s in self.style_layers}
        self.state["style_mask"] = [
            {
                name: _float32(
                    resize(weights[..., i], (features[name].shape[2], features[name].shape[1]))[None, ..., None]
                )
                for name in layers
            }
            for i in range(count)
        ]
        self.state["style_share"] = [_float32(share) for share in regions.shares]

    def hold(self, target: np.ndarray | None, mask: np.ndarray | None = None, weight: float = 0.0, shape=None) -> None:
        """The temporal term: aim at ``target`` (network space, HxWx3) on ``mask`` (HxWx1) with
        ``weight``; None turns it off (a clip's first frame)."""
        shape = shape or tuple(self.state["temporal"]["target"].shape[1:3])
        self.state["temporal"] = {
            "target": _float32(np.zeros((1, *shape, 3)) if target is None else np.asarray(target)[None]),
            "mask": _float32(np.zeros((1, *shape, 1)) if mask is None else np.asarray(mask)[None]),
            "weight": _float32(weight if target is not None else 0.0),
        }

    @property
    def temporal(self) -> bool:
        return "temporal" in self.state

    @property
    def temporal_weight(self) -> float:
        return float(backend.to_numpy(self.state["temporal"]["weight"])) if self.temporal else 0.0

    def _scale(self, term: Callable[..., Tensor], start: Tensor, target: object, *weights: Tensor | None) -> Tensor:
        """What a layer's term is divided by: 1, or with SWAG the term at ``start``: the photo for
        style, a blank feature map for content (the photo scores 1 and 0)."""
        if self.swag_temperature <= 0:
            return _float32(1.0)
        return _float32(max(float(backend.to_numpy(term(start, target, *weights))), 1e-30))

    def features(self, image: Tensor, wrap: int = 0) -> dict[str, Tensor]:
        """The extractor's activations (of the image repeating, with ``wrap``), smoothed by SWAG when it is on."""
        features = self.extractor(image, wrap=wrap)
        if self.swag_temperature > 0:
            features = {name: swag(f, self.swag_temperature) for name, f in features.items()}
        return features

    def step_state(self) -> dict[str, Any]:
        """The state for the next optimiser step: with ``tileable = "roll"``, rolled by a new random offset."""
        if self.tileable == "roll":
            height, width = self._shape
            offset = roll_offset(self._rolls, height, width, max(self.extractor.strides.values()))
            self.state["shift"] = K.convert_to_tensor(np.asarray(offset, np.int32))
        return self.state

    def _rolled(self, image: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """``image`` and every spatial part of ``state`` rolled by ``state["shift"]`` (px; feature
        maps by the shift over their stride)."""
        dy, dx = state["shift"][0], state["shift"][1]
        strides = self.extractor.strides

        def roll(t: Tensor, stride: int = 1) -> Tensor:
            return K.roll(K.roll(t, dy // stride, axis=1), dx // stride, axis=2)

        rolled = dict(state)
        rolled["content"] = {name: roll(t, strides[name]) for name, t in state["content"].items()}
        if "style_mask" in state:
            rolled["style_mask"] = [{n: roll(t, strides[n]) for n, t in m.items()} for m in state["style_mask"]]
        if "temporal" in state:
            held = state["temporal"]
            rolled["temporal"] = {**held, "target": roll(held["target"]), "mask": roll(held["mask"])}
        return roll(image), rolled

    def value_at(self, image: np.ndarray) -> float:
        """The total loss at ``image`` (network space, a batch of one)."""
        return float(backend.to_numpy(self(_float32(image))["total"]))

    def __call__(self, image: Tensor) -> dict[str, Tensor]:
        """Loss terms and their weighted ``total`` for a batch of one image, at the current state."""
        return self.evaluate(image, self.state)

    def evaluate(self, image: Tensor, state: dict[str, Any]) -> dict[str, Tensor]:
        """Loss terms and their weighted ``total`` for a batch of one image in network space,
        aimed at ``state`` (:attr:`state`'s structure): a pure function of its two arguments."""
        if "shift" in state:  # tileable = "roll": the loss of the image rolled, its spatial targets with it
            image, state = self._rolled(image, state)
        if self.native_gram:
            features = self.extractor(image, native=True, wrap=self.wrap)
        else:
            features = self.features(image, self.wrap)
        content = _weighted_mean(
            [
                (
                    s.weight,
                    content_loss(K.cast(features[s.layer], "float32"), state["content"][s.layer])
                    / state["content_scale"][s.layer],
                )
                for s in self.content_layers
            ]
        )
        count = len(state["style"])
        masks = state.get("style_mask", [{}] * count)
        shares = state.get("style_share", self.blend)
        style = _sum(
            [
                share
                * _weighted_mean(
                    [
                        (
                            s.weight,
                            self.statistic.loss(features[s.layer], targets[s.layer], mask.get(s.layer))
                            / scales[s.layer],
                        )
                        for s in self.style_layers
                    ]
                )
                for share, targets, scales, mask in zip(shares, state["style"], state["style_scale"], masks)
            ]
        )
        cw, sw, tw = self.weights
        # Reported either way; differentiated only when it counts: TV's gradient (slice
        # gradients over the whole image) is a noticeable share of a step.
        tv = total_variation(image if tw > 0 else K.stop_gradient(image), wrap=self.tileable != "off")
        losses = {"total": cw * content + sw * style + tw * tv, "content": content, "style": style, "tv": tv}
        if "temporal" in state:
            held = state["temporal"]
            losses["temporal"] = temporal_loss(image, held["target"], held["mask"], self.pixel_scale)
            losses["total"] = losses["total"] + held["weight"] * losses["temporal"]
        return losses


def wrap_margin(extractor: FeatureExtractor, shape: tuple[int, int]) -> int:
    """How far a tileable picture is padded circularly (px): the network's effective receptive
    radius, rounded up to its deepest stride, and at most the image's shorter side."""
    multiple = max(extractor.strides.values())
    radius = -(-extractor.receptive_radius() // multiple) * multiple
    return min(radius, min(shape) // multiple * multiple)


def style_targets(
    extractor: FeatureExtractor,
    image: Tensor,
    layers: Sequence[str],
    statistic: Statistic,
    swag_temperature: float = 0.0,
    tile: int | None = None,
) -> dict[str, tuple[Tensor, ...]]:
    """``statistic``'s target for each layer, from a style image (batch of one, network space).

    With ``tile`` (px, a multiple of the network's total stride) the image goes through the
    network in tiles of that size, each with a margin of context around it, and each tile adds
    the features of its own part to the layer's :class:`Moments`: an image far larger than one
    forward pass fits gets the same statistic, up to the network's padding at the margins.
    """
    from .backbones.extractor import SIZE_MULTIPLE

    layers = list(dict.fromkeys(layers))
    moments = {name: Moments(swag_temperature, statistic.needs_values) for name in layers}
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


def _sum(terms: list[Tensor]) -> Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _weighted_mean(terms: list[tuple[float, Tensor]]) -> Tensor:
    if not terms:
        return _float32(0.0)
    return _sum([w * t for w, t in terms]) / sum(w for w, _ in terms)


def objective(
    cfg: Config,
    extractor: FeatureExtractor,
    content: Image.Image,
    styles: Sequence[Image.Image],
    targets: Targets | None = None,
    temporal: bool = False,
    regions: Regions | None = None,
    masked: bool = False,
) -> StyleTransferLoss:
    """``cfg``'s loss for one content image and its style images, all already at their sizes
    (or, with ``targets``, style statistics computed beforehand: a tiled scale's); ``masked``
    makes style apply in regions, the content's own given by ``regions``."""
    styles_in = [network_input(extractor, s) for s in styles]
    terms = Terms.of(cfg, extractor, temporal, masked or regions is not None)
    return StyleTransferLoss(extractor, terms, network_input(extractor, content), styles_in, targets, regions)


def tensor(array: np.ndarray) -> Tensor:
    """An array as a float32 tensor of the running backend."""
    return _float32(array)


def network_input(extractor: FeatureExtractor, image: Image.Image | np.ndarray) -> Tensor:
    """An RGB image (PIL, or an array of 0-255 values) as the extractor's network takes it:
    preprocessed, a batch of one."""
    return _float32(extractor.backbone.preprocessing.forward(np.asarray(image))[None])
