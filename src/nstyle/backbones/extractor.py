"""The network as a feature extractor: cut at the deepest layer in use, folded, in its precision."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

from .._tf import quiet_tensorflow
from .registry import Backbone, resolve_layer

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class FeatureExtractor:
    """The backbone cut at the deepest layer in use, returning the requested activations.

    A functional ``keras.Model`` built from the requested outputs keeps only the layers
    those outputs depend on, so nothing past the deepest layer is ever computed. That cut
    network is then copied with its BatchNorms folded into the convolutions (``fold``) and
    its layers computing in ``precision``; the features come back as float32 whatever the
    precision, so every statistic and loss downstream is computed in float32.
    """

    def __init__(
        self,
        backbone: Backbone,
        model: "keras.Model",
        layers: Sequence[str],
        precision: str = "float32",
        fold: bool = True,
    ):
        quiet_tensorflow()
        import keras

        from . import folding  # imported here: it defines a Keras layer, so importing it loads TensorFlow

        names = [layer.name for layer in model.layers]
        #: the name each caller asked for (Keras name or alias) -> Keras layer name
        self.resolved = {n: resolve_layer(backbone, names, n) for n in layers}
        self.layers = list(dict.fromkeys(self.resolved.values()))
        self.backbone = backbone
        self.precision = precision
        cut = keras.Model(model.input, [model.get_layer(n).output for n in self.layers])
        if fold or precision != "float32":
            cut = folding.clone(cut, fold=fold, keep=self.layers, dtype=precision)
        self.model = cut

    def __call__(self, x) -> dict[str, "tf.Tensor"]:
        """Float32 activations for a batch ``x`` in network-input space, keyed by Keras layer name."""
        tf = quiet_tensorflow()
        outputs = self.model(x, training=False)
        if not isinstance(outputs, (list, tuple)):  # a one-output model returns a bare tensor
            outputs = [outputs]
        return {name: tf.cast(out, tf.float32) for name, out in zip(self.layers, outputs)}


@functools.lru_cache(maxsize=4)
def feature_extractor(
    backbone: Backbone, model: "keras.Model", layers: tuple[str, ...], precision: str
) -> FeatureExtractor:
    """A :class:`FeatureExtractor`, kept per network, layer set and precision.

    Folding copies the network (about a second for ResNet50); probes, grids and sweeps
    stylize many times with the same one, and the models :func:`load_model` returns are
    themselves cached, so the copy is made once.
    """
    return FeatureExtractor(backbone, model, layers, precision)
