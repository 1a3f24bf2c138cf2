"""BatchNorm folding: each inference conv -> BatchNorm pair becomes one convolution.

In inference a BatchNormalization is a per-channel affine map ``z = s * (y - mean) + beta``
with ``s = gamma / sqrt(var + eps)``. After a linear convolution ``y = W x + b`` it folds
exactly into the kernel and bias: ``W' = W s``, ``b' = s (b - mean) + beta``. A style
transfer step runs the network forward and backward about a thousand times, and every BN is
two full passes over an activation tensor each way, so folding is free speed.

The folded network keeps every layer name: the BN becomes a :class:`FoldedBatchNorm`
pass-through under its own name, so a request for a BN's output (the notebook's
``bn4e_branch2b``) still finds it, and it equals the folded conv's output. A conv whose own
(pre-BN) output is requested, like the notebook's ``res3a_branch1``, is left unfolded, so it
returns exactly what it returned before.

PyPI's ``tensorflow-batchnorm-folding`` (1.0.9) was tried first: it reads Keras 2's
``batch_input_shape`` from the input layer's config and fails on Keras 3 (KeyError), and it
requires the ``tensorflow`` distribution, a second TensorFlow beside ``tensorflow-cpu``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..backends import load_keras

keras = load_keras()


@keras.saving.register_keras_serializable(package="nstyle")
class FoldedBatchNorm(keras.layers.Layer):
    """Stands where a BatchNormalization was folded into the convolution before it: a pass-through."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def foldable_pairs(model: keras.Model, keep: Iterable[str] = ()) -> dict[str, str]:
    """BatchNorm name -> name of the convolution it folds into.

    A pair folds when the BN follows a Conv2D or DepthwiseConv2D with a linear activation,
    normalises the channel axis, and is the conv's only consumer; and the conv's own output
    is not in ``keep`` (folding would change it).
    """
    keep = set(keep)
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        node = layer._inbound_nodes[0]
        if len(node.input_tensors) != 1:
            continue
        conv = node.input_tensors[0]._keras_history.operation
        if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            continue
        if conv.get_config().get("activation") != "linear" or conv.name in keep:
            continue
        if len(conv._inbound_nodes) != 1 or len(conv._outbound_nodes) != 1:
            continue
        if layer.axis not in (-1, len(conv.output.shape) - 1):
            continue
        pairs[layer.name] = conv.name
    return pairs


def folded_weights(conv: keras.layers.Layer, bn: keras.layers.BatchNormalization) -> list[np.ndarray]:
    """The kernel and bias of ``conv`` with ``bn`` folded in, in float64 arithmetic."""
    weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    channels = weights["moving_mean"].shape[0]
    gamma = weights.get("gamma", np.ones(channels))
    beta = weights.get("beta", np.zeros(channels))
    scale = gamma / np.sqrt(weights["moving_variance"] + bn.epsilon)
    kernel = np.asarray(conv.kernel.numpy(), np.float64)
    bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(channels)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # kernel (kh, kw, in, multiplier), out = in * multiplier
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # kernel (..., in, out)
        kernel = kernel * scale
    bias = scale * (bias - weights["moving_mean"]) + beta
    return [kernel.astype(np.float32), bias.astype(np.float32)]


def clone(
    model: keras.Model,
    fold: bool = True,
    keep: Iterable[str] = (),
    dtype: str = "float32",
    input_gradients: bool = False,
) -> keras.Model:
    """A copy of ``model`` with BatchNorms folded (unless ``fold`` is False), computing in ``dtype``.

    ``keep`` names layers whose outputs must stay as they are. Every layer is rebuilt with
    ``dtype`` as its policy, so a low-precision network keeps its weights in that precision
    too and pays no cast per step. With ``input_gradients``, convolutions are rebuilt as
    :class:`~nstyle.backbones.gradients.InputGradConv2D`: the same outputs, and input
    gradients computed by the forward kernel, faster on CPUs.
    """
    if input_gradients:  # TensorFlow's fast path: the module needs TensorFlow
        from .gradients import InputGradConv2D
    pairs = foldable_pairs(model, keep) if fold else {}
    folded_convs = {conv: bn for bn, conv in pairs.items()}

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name, dtype=dtype)
        config = layer.get_config()
        # An unfolded BatchNorm keeps float32 statistics and arithmetic (Keras's mixed policy).
        bn_low = isinstance(layer, keras.layers.BatchNormalization) and dtype != "float32"
        config["dtype"] = f"mixed_{dtype}" if bn_low else dtype
        if layer.name in folded_convs:
            config["use_bias"] = True
        kind = InputGradConv2D if input_gradients and type(layer) is keras.layers.Conv2D else type(layer)
        return kind.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    for layer in model.layers:
        if not layer.weights or layer.name in pairs:
            continue
        target = copy.get_layer(layer.name)
        if layer.name in folded_convs:
            target.set_weights(folded_weights(layer, model.get_layer(folded_convs[layer.name])))
        else:
            target.set_weights(layer.get_weights())
        if input_gradients and isinstance(target, InputGradConv2D):
            target.freeze()
    return copy
