"""Random weights drawn with NumPy, so ``--weights random:N`` is the same network on every backend.

Keras's own initializers draw through each backend's random generator (TensorFlow's, JAX's,
PyTorch's), so the same seed gives three different networks and three different results. Here
every kernel is drawn from one NumPy generator seeded with N, in the order of the model's
weights, with the distribution its layer's initializer names (Keras's variance scaling: Glorot,
He, LeCun, uniform or truncated normal); weights whose initializers are constants (biases,
BatchNorm's scale, shift and statistics) keep them. The record of a run names
:data:`GENERATOR`, so a record made with the backends' generators is known not to match.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    import keras

#: The name the run record gives these weights' generator.
GENERATOR = "numpy-pcg64"

_KERNEL_INITIALIZERS = ("kernel_initializer", "depthwise_initializer")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fan-in and fan-out as Keras computes them: receptive field times input and output channels."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def variance_scaling(rng: np.random.Generator, shape: tuple[int, ...], config: dict) -> np.ndarray:
    """One draw of Keras's ``VarianceScaling(scale, mode, distribution)`` from ``rng``."""
    fan_in, fan_out = fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[config.get("mode", "fan_in")]
    scale = config.get("scale", 1.0) / max(1.0, fan)
    distribution = config.get("distribution", "truncated_normal")
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    if distribution == "untruncated_normal":
        return rng.normal(0.0, math.sqrt(scale), shape).astype(np.float32)
    stddev = math.sqrt(scale) / 0.87962566103423978  # Keras's: the std of a normal truncated at 2 sigma
    return stats.truncnorm.rvs(-2.0, 2.0, scale=stddev, size=shape, random_state=rng).astype(np.float32)


def kernel_initializer(layer: keras.layers.Layer) -> dict:
    """The variance-scaling settings of ``layer``'s kernel (Glorot uniform, Keras's default, if none)."""
    import keras

    for attribute in _KERNEL_INITIALIZERS:
        initializer = getattr(layer, attribute, None)
        if isinstance(initializer, keras.initializers.VarianceScaling):  # Glorot's config omits these: read them
            return {"scale": initializer.scale, "mode": initializer.mode, "distribution": initializer.distribution}
    return {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform"}


def draw_weights(model: keras.Model, seed: int) -> keras.Model:
    """Give every kernel of ``model`` a NumPy draw from ``seed``; other weights keep their constants."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for variable in layer.weights:
            if len(variable.shape) >= 2:  # a kernel: dense, convolution or depthwise
                variable.assign(variance_scaling(rng, tuple(variable.shape), kernel_initializer(layer)))
    return model
