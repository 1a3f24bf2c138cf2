import numpy as np
import pytest

from nstyle.losses import content_loss, gram_matrix, style_loss, total_variation, tf

rng = np.random.default_rng(0)


def np_gram(f):
    a = f.reshape(-1, f.shape[-1])
    return a.T @ a / a.shape[0]


def test_gram_matches_numpy():
    f = rng.normal(size=(1, 5, 7, 4)).astype(np.float32)
    np.testing.assert_allclose(gram_matrix(tf.constant(f)).numpy(), np_gram(f), rtol=1e-5, atol=1e-6)


def test_content_and_style_match_numpy():
    f, g = (rng.normal(size=(1, 6, 3, 5)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(content_loss(tf.constant(f), tf.constant(g)).numpy(), np.mean((f - g) ** 2), rtol=1e-5)
    target = np_gram(g)
    expected = np.mean((np_gram(f) - target) ** 2)
    np.testing.assert_allclose(style_loss(tf.constant(f), tf.constant(target)).numpy(), expected, rtol=1e-5)


def test_total_variation_matches_numpy():
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    expected = np.mean((x[:, 1:] - x[:, :-1]) ** 2) + np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
    np.testing.assert_allclose(total_variation(tf.constant(x)).numpy(), expected, rtol=1e-5)
    assert total_variation(tf.zeros((1, 4, 4, 3))).numpy() == 0


def test_style_loss_ignores_position_but_content_does_not():
    f = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    shuffled = f.reshape(16, 3)[rng.permutation(16)].reshape(1, 4, 4, 3)
    assert style_loss(tf.constant(shuffled), gram_matrix(tf.constant(f))).numpy() == pytest.approx(0, abs=1e-6)
    assert content_loss(tf.constant(shuffled), tf.constant(f)).numpy() > 0.1


def test_gram_gradient_matches_numpy():
    """The hand-written one-matmul gradient of the Gram matrix, against d/dF sum((G - T)^2) in numpy."""
    f = rng.normal(size=(1, 6, 5, 4)).astype(np.float64)
    t = rng.normal(size=(4, 4))
    with tf.GradientTape() as tape:
        x = tf.constant(f, tf.float32)
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(gram_matrix(x) - tf.constant(t, tf.float32)))
    a = f.reshape(-1, 4)
    upstream = 2 * (a.T @ a / a.shape[0] - t)  # dL/dG, symmetric here
    expected = (a @ (upstream + upstream.T) / a.shape[0]).reshape(f.shape)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_tv_is_reported_at_weight_zero_and_differentiated_only_when_weighted():
    from nstyle.backbones import REGISTRY, FeatureExtractor, load_model
    from nstyle.losses import StyleTransferLoss, WeightedLayer

    extractor = FeatureExtractor(REGISTRY["vgg16"], load_model("vgg16", "random:0"), ["block1_conv2"])
    image = tf.constant(rng.uniform(-100, 100, (1, 16, 16, 3)).astype(np.float32))
    layer = [WeightedLayer("block1_conv2", 1.0)]

    def value_and_grad(tv_weight):
        loss = StyleTransferLoss(extractor, image, [image], layer, layer, 1.0, 1.0, tv_weight)
        x = tf.Variable(image + 1.0)
        with tf.GradientTape() as tape:
            losses = loss(x)
        return losses, tape.gradient(losses["total"], x).numpy()

    off, grad_off = value_and_grad(0.0)
    on, grad_on = value_and_grad(0.5)
    assert float(off["tv"]) == pytest.approx(float(total_variation(image + 1.0)), rel=1e-5)
    with tf.GradientTape() as tape:
        x = tf.Variable(image + 1.0)
        tv = total_variation(x)
    np.testing.assert_allclose(grad_on - grad_off, 0.5 * tape.gradient(tv, x).numpy(), rtol=1e-3, atol=1e-3)
