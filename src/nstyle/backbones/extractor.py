"""The network as a feature extractor: cut at the deepest layer in use, folded, in its precision."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._tf import quiet_tensorflow
from .registry import Backbone, resolve_layer

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


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
        tf = quiet_tensorflow()
        import keras

        from . import folding  # imported here: it defines a Keras layer, so importing it loads TensorFlow

        names = [layer.name for layer in model.layers]
        #: the name each caller asked for (Keras name or alias) -> Keras layer name
        self.resolved = {n: resolve_layer(backbone, names, n) for n in layers}
        self.layers = list(dict.fromkeys(self.resolved.values()))
        self.backbone = backbone
        self.precision = precision
        self.source = model  # the uncut network, for the memory model's activation count
        cut = keras.Model(model.input, [model.get_layer(n).output for n in self.layers])
        if input_gradients is None:  # measured faster on a CPU in float32; GPUs and 16 bits were not measured
            input_gradients = precision == "float32" and not tf.config.list_physical_devices("GPU")
        if fold or precision != "float32" or input_gradients:
            cut = folding.clone(cut, fold=fold, keep=self.layers, dtype=precision, input_gradients=input_gradients)
        self.model = cut
        self.channels = int(cut.inputs[0].shape[-1])
        #: ``model`` as one graph for a batch of any size: traced once, called by every loss
        any_size = tf.TensorSpec([None, None, None, self.channels], tf.float32)
        self.network = tf.function(lambda x: cut(x, training=False), input_signature=[any_size])

    @functools.cached_property
    def strides(self) -> dict[str, int]:
        """Each layer's total stride (input pixels per feature position), measured once on a probe."""
        tf = quiet_tensorflow()
        probe = 2 * SIZE_MULTIPLE  # a side every stride divides
        outputs = self._listed(self.network(tf.zeros([1, probe, probe, self.channels])))
        return {name: probe // int(out.shape[1]) for name, out in zip(self.layers, outputs)}

    def __call__(self, x) -> dict[str, tf.Tensor]:
        """Float32 activations for a batch ``x`` in network-input space, keyed by Keras layer name.

        The image is first mirrored at its bottom and right edges up to a multiple of the
        deepest layer's stride, and each feature map cropped back to the part the image covers.
        Why: TensorFlow's 'same' padding of a stride-2 layer puts its one row of zeros below an
        even-sized map but one above and one below an odd-sized one, and VGG's pooling drops an
        odd map's last row. An image whose side halves to an odd number (170 -> 85) then has
        top rows seen differently from all others, and the optimiser painted a 2-3 px band of
        saturated noise there. At a multiple of the deepest stride every map that is halved on
        the way to a requested layer is even-sized; padding further (to the network's total
        stride, 170 -> 192 rather than 176 for the seed's layers) only costs time.
        """
        tf = quiet_tensorflow()
        # From the runtime shape, so one compiled step serves images of every size (a pad of
        # nothing and a whole-map slice where the size needs none: measured no slower).
        shape = tf.shape(x)
        height, width = shape[1], shape[2]
        multiple = max(self.strides.values())
        x = tf.pad(x, [[0, 0], [0, -height % multiple], [0, -width % multiple], [0, 0]], mode="SYMMETRIC")
        features = {}
        for name, out in zip(self.layers, self._listed(self.network(tf.cast(x, tf.float32)))):
            # keep the positions the image itself reaches: ceil(side / stride). tf.slice, not
            # indexing: a strided slice's gradient is a costly scatter, a slice's is a pad.
            stride = self.strides[name]
            out = tf.slice(out, [0, 0, 0, 0], [-1, -(-height // stride), -(-width // stride), -1])
            features[name] = tf.cast(out, tf.float32)
        return features

    @staticmethod
    def _listed(outputs) -> list[tf.Tensor]:
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
        tf = quiet_tensorflow()
        rng = np.random.default_rng(0)
        x = tf.constant(self.backbone.preprocessing.forward(rng.uniform(0, 255, (1, side, side, 3))), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = min(self(x).values(), key=lambda f: int(f.shape[1]))  # the coarsest map: the deepest layer
            centre = tf.reduce_sum(f[:, f.shape[1] // 2, f.shape[2] // 2, :])
        mass = np.abs(tape.gradient(centre, x).numpy()[0]).sum(axis=-1)
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
    tf = quiet_tensorflow()
    import keras

    cut = keras.Model(model.input, [model.get_layer(n).output for n in layers])
    graph = (
        tf.function(lambda x: cut(x, training=False))
        .get_concrete_function(tf.TensorSpec([1, side, side, 3], tf.float32))
        .graph
    )
    skip = {"Const", "ReadVariableOp", "Placeholder", "VarHandleOp", "Identity", "NoOp"}
    floats = sum(
        o.shape.num_elements()
        for op in graph.get_operations()
        if op.type not in skip
        for o in op.outputs
        if o.dtype.is_floating and o.shape.is_fully_defined()
    )
    return floats / side**2


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
