"""The network as a feature extractor: cut at the deepest layer in use, folded, in its precision."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

from .._tf import quiet_tensorflow
from .registry import Backbone, resolve_layer

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


#: The total stride of every network nstyle lists (five halvings): inputs are padded to it.
SIZE_MULTIPLE = 32


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
        """Float32 activations for a batch ``x`` in network-input space, keyed by Keras layer name.

        The image is first mirrored at its bottom and right edges up to a multiple of
        :data:`SIZE_MULTIPLE`, and each feature map cropped back to the part the image covers.
        Why: TensorFlow's 'same' padding of a stride-2 layer puts its one row of zeros below an
        even-sized map but one above and one below an odd-sized one, and VGG's pooling drops an
        odd map's last row. An image whose side halves to an odd number (170 -> 85) then has
        top rows seen differently from all others, and the optimiser painted a 2-3 px band of
        saturated noise there. At a multiple of the total stride every map is even-sized.
        """
        tf = quiet_tensorflow()
        height, width = int(x.shape[1]), int(x.shape[2])
        pad_h, pad_w = -height % SIZE_MULTIPLE, -width % SIZE_MULTIPLE
        if pad_h or pad_w:
            x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
        outputs = self.model(x, training=False)
        if not isinstance(outputs, (list, tuple)):  # a one-output model returns a bare tensor
            outputs = [outputs]
        features = {}
        for name, out in zip(self.layers, outputs):
            if pad_h or pad_w:  # keep the positions the image itself reaches: ceil(side / stride)
                rows = -(-height * int(out.shape[1]) // (height + pad_h))
                cols = -(-width * int(out.shape[2]) // (width + pad_w))
                out = out[:, :rows, :cols, :]
            features[name] = tf.cast(out, tf.float32)
        return features


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
