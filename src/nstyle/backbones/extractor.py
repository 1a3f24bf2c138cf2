"""The network as a feature extractor: cut at the deepest layer in use, folded, in its precision."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..backends import load_keras, ops
from .registry import Backbone, resolve_layer

if TYPE_CHECKING:
    import keras


#: The total stride of every network nstyle lists (five halvings): tiles and probes are multiples of it.
SIZE_MULTIPLE = 32


class FeatureExtractor:
    """The backbone cut at the deepest layer in use, returning the requested activations.

    A functional ``keras.Model`` built from the requested outputs keeps only the layers
    those outputs depend on, so nothing past the deepest layer is ever computed. That cut
    network is then copied with its BatchNorms folded into the convolutions (``fold``) and
    its layers computing in ``precision``; the features come back as float32 whatever the
    precision, so every statistic and loss downstream is computed in float32. With
    ``input_gradients`` (by default on a CPU in float32) its convolutions' input gradients are
    computed by the forward kernel (:mod:`~nstyle.backbones.gradients`), which makes a CPU step
    faster (benchmarks/step_speed.py).

    The network is compiled once, for images of any size (``network``). Each compiled
    optimiser step (one per scale, and per tile size) then only traces its own loss around
    that call, and targets are computed by the compiled network instead of eagerly: a new
    scale's step traces in a fraction of the time, and its targets too, for the same step time.
    """

    def __init__(
        self,
        backbone: Backbone,
        model: keras.Model,
        layers: Sequence[str],
        precision: str = "float32",
        fold: bool = True,
        input_gradients: bool | None = None,
    ):
        keras = load_keras()
        self._ops, self._backend = keras.ops, ops()  # resolved once: calls are traced into compiled steps
        backend = self._backend

        from . import folding  # imported here: it defines a Keras layer, so importing it loads Keras

        names = [layer.name for layer in model.layers]
        #: the name each caller asked for (Keras name or alias) -> Keras layer name
        self.resolved = {n: resolve_layer(backbone, names, n) for n in layers}
        self.layers = list(dict.fromkeys(self.resolved.values()))
        self.backbone = backbone
        self.precision = precision
        self.source = model  # the uncut network, for the memory model's activation count
        cut = keras.Model(model.input, [model.get_layer(n).output for n in self.layers])
        if input_gradients is None:  # measured faster on a CPU in float32; GPUs and 16 bits were not measured
            input_gradients = precision == "float32" and backend.forward_kernel_gradients()
        if fold or precision != "float32" or input_gradients:
            cut = folding.clone(cut, fold=fold, keep=self.layers, dtype=precision, input_gradients=input_gradients)
        self.model = cut
        self.channels = int(cut.inputs[0].shape[-1])
        #: ``model`` compiled (for a batch of any size, where the backend generalises), called by every loss
        self.network = backend.compile(lambda x: cut(x, training=False), any_shape=True)

    @functools.cached_property
    def strides(self) -> dict[str, int]:
        """Each layer's total stride (input pixels per feature position), measured once on a probe."""
        probe = 2 * SIZE_MULTIPLE  # a side every stride divides
        outputs = self._listed(self.network(load_keras().ops.zeros([1, probe, probe, self.channels])))
        return {name: probe // int(out.shape[1]) for name, out in zip(self.layers, outputs)}

    def __call__(self, x, native: bool = False, wrap: int = 0) -> dict[str, object]:
        """Float32 activations for a batch ``x`` in network-input space, keyed by Keras layer name
        (``native``: in the network's own precision, for a loss that computes in it).

        ``wrap`` (px, a multiple of the deepest stride, at most the image's shorter side) pads
        the image circularly by that much on every side first, and crops each map to the image
        again: the features of a picture that repeats, whose edges see the opposite edges as
        their neighbours (a ``tileable`` picture, :mod:`nstyle.wrap`).

        The image is first mirrored at its bottom and right edges up to a multiple of the
        deepest layer's stride, and each feature map cropped back to the part the image covers.
        Why: 'same' padding of a stride-2 layer puts its one row of zeros below an even-sized
        map but one above and one below an odd-sized one, and VGG's pooling drops an odd map's
        last row. An image whose side halves to an odd number (170 -> 85) then has top rows
        seen differently from all others, and the optimiser painted a 2-3 px band of saturated
        noise there. At a multiple of the deepest stride every map that is halved on the way to
        a requested layer is even-sized; padding further (to the network's total stride,
        170 -> 192 rather than 176 for the seed's layers) only costs time.
        """
        K, backend = self._ops, self._backend
        # The size as the backend knows it (a tensor inside a graph that serves every size), so
        # one compiled step serves images of every size where the backend allows it.
        shape = K.shape(x)
        height, width = shape[1], shape[2]
        multiple = max(self.strides.values())
        x = K.cast(x, "float32")
        if wrap:
            x = K.concatenate([x[:, -wrap:], x, x[:, :wrap]], axis=1)
            x = K.concatenate([x[:, :, -wrap:], x, x[:, :, :wrap]], axis=2)
        x = backend.pad_symmetric(x, -(height + 2 * wrap) % multiple, -(width + 2 * wrap) % multiple)
        features = {}
        for name, out in zip(self.layers, self._listed(self.network(x))):
            # keep the positions the image itself reaches: ceil(side / stride).
            stride = self.strides[name]
            if wrap:
                out = out[:, wrap // stride :, wrap // stride :, :]
            out = backend.crop(out, -(-height // stride), -(-width // stride))
            features[name] = out if native else K.cast(out, "float32")
        return features

    @staticmethod
    def _listed(outputs) -> list:
        """The network's outputs as a list: a one-output model returns a bare tensor."""
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def receptive_radius(self, side: int = 384, share: float = 0.9) -> int:
        """The effective receptive field of the deepest layer, as a radius in input pixels.

        A unit's theoretical field in a deep network spans hundreds of pixels, but its
        gradient falls off like a Gaussian (Luo et al., "Understanding the effective receptive
        field", NIPS 2016). This measures that gradient for the centre position of the deepest
        layer used, on a random image, and returns the radius of the square around the centre
        that holds ``share`` of its mass: how far apart two pixels must be before one tile's
        edge stops mattering to the other's features. Tiles overlap by at least this much.
        """
        K = load_keras().ops
        rng = np.random.default_rng(0)
        x = K.convert_to_tensor(
            self.backbone.preprocessing.forward(rng.uniform(0, 255, (1, side, side, 3))).astype(np.float32)
        )

        def centre(x):
            f = min(self(x).values(), key=lambda f: int(f.shape[1]))  # the coarsest map: the deepest layer
            return K.sum(f[:, f.shape[1] // 2, f.shape[2] // 2, :]), ()

        _, _, grad = ops().value_and_grad(centre)(x)
        mass = np.abs(ops().to_numpy(grad)[0]).sum(axis=-1)
        total = mass.sum()
        if total <= 0:
            return side // 2
        cy = cx = side // 2
        for radius in range(1, side // 2 + 1):
            if mass[max(0, cy - radius) : cy + radius, max(0, cx - radius) : cx + radius].sum() >= share * total:
                return radius
        return side // 2


def activation_floats(model: keras.Model, layers: Sequence[str], side: int = 128) -> float:
    """Floats of every intermediate tensor per input pixel, ``model`` cut at ``layers``: what a
    forward pass keeps for its backward pass, so the memory model's measure of a layer set's depth."""
    return _activation_floats(model, tuple(layers), side)


@functools.lru_cache(maxsize=16)
def _activation_floats(model: keras.Model, layers: tuple[str, ...], side: int) -> float:
    keras = load_keras()
    cut = keras.Model(model.input, [model.get_layer(n).output for n in layers])
    probe = np.zeros((1, side, side, 3), np.float32)
    return ops().intermediate_floats(lambda x: cut(x, training=False), probe) / side**2


def default_activation_ratio(extractor: FeatureExtractor) -> float:
    """How many more activations ``extractor``'s layers keep than its backbone's default layers."""
    backbone = extractor.backbone
    names = [layer.name for layer in extractor.source.layers]
    default = [resolve_layer(backbone, names, n) for n in (*backbone.content_layers, *backbone.style_layers)]
    return activation_floats(extractor.source, extractor.layers) / activation_floats(extractor.source, default)


@functools.lru_cache(maxsize=4)
def feature_extractor(
    backbone: Backbone, model: keras.Model, layers: tuple[str, ...], precision: str
) -> FeatureExtractor:
    """A :class:`FeatureExtractor`, kept per network, layer set and precision.

    Folding copies the network (about a second for ResNet50); probes, grids and sweeps
    stylize many times with the same one, and the models :func:`load_model` returns are
    themselves cached, so the copy is made once.
    """
    return FeatureExtractor(backbone, model, layers, precision)
