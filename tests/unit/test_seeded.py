"""``random:N`` weights are NumPy draws: the same numbers whatever backend builds the network."""

import math

import numpy as np
import pytest

from nstyle.backbones import get_backbone, load_model
from nstyle.backbones.seeded import draw_weights, fans, variance_scaling


def test_glorot_kernels_are_numpys_uniform_draws_in_layer_order():
    model = load_model("vgg16", "random:3")
    kernels = [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]
    rng = np.random.default_rng(3)
    for layer in kernels[:3]:  # the first draws of the generator, in the model's order
        shape = tuple(layer.kernel.shape)
        fan_in, fan_out = fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, VGG16's initializer
        expected = rng.uniform(-limit, limit, shape).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(layer.kernel), expected)
        np.testing.assert_array_equal(np.asarray(layer.bias), 0)  # constants stay constants


def test_truncated_normal_has_kerass_spread_and_bounds():
    shape = (3, 3, 64, 128)
    draw = variance_scaling(np.random.default_rng(0), shape, {"scale": 2.0, "mode": "fan_out"})
    std = math.sqrt(2.0 / (9 * 128))
    assert draw.std() == pytest.approx(std, rel=0.02)  # Keras divides by 0.8796 so the truncated std is this
    assert np.abs(draw).max() <= 2 * std / 0.87962566103423978 + 1e-7


def test_the_same_seed_gives_the_same_network_and_another_seed_another():
    def first_kernel(seed):  # a fresh network each time, not load_model's cached one
        return np.asarray(draw_weights(get_backbone("vgg16").build(None), seed).layers[1].kernel)

    np.testing.assert_array_equal(first_kernel(5), first_kernel(5))
    assert not np.array_equal(first_kernel(5), first_kernel(6))
