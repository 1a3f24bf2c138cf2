import numpy as np
import pytest

from nstyle.losses import Moments, content_loss, gram_matrix, style_loss, tf, total_variation

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
    from nstyle.losses import StyleTransferLoss, Terms, WeightedLayer

    extractor = FeatureExtractor(REGISTRY["vgg16"], load_model("vgg16", "random:0"), ["block1_conv2"])
    image = tf.constant(rng.uniform(-100, 100, (1, 16, 16, 3)).astype(np.float32))
    layer = [WeightedLayer("block1_conv2", 1.0)]

    def value_and_grad(tv_weight):
        loss = StyleTransferLoss(extractor, Terms(layer, layer, 1.0, 1.0, tv_weight), image, [image])
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


def scipy_w2(f: np.ndarray, g: np.ndarray) -> float:
    """2-Wasserstein distance between Gaussian fits of two (positions, channels) samples, by scipy."""
    import scipy.linalg

    mf, mg = f.mean(0), g.mean(0)
    cf, cg = np.cov(f, rowvar=False, bias=True), np.cov(g, rowvar=False, bias=True)
    root = scipy.linalg.sqrtm(cg).real
    cross = scipy.linalg.sqrtm(root @ cf @ root).real
    return float(np.sum((mf - mg) ** 2) + np.trace(cf) + np.trace(cg) - 2 * np.trace(cross))


def w2(f: np.ndarray, g: np.ndarray) -> float:
    from nstyle.losses import WassersteinStyle

    stat, channels = WassersteinStyle(), f.shape[-1]
    shape = (1, f.shape[0], 1, channels)
    return (
        float(
            stat.loss(
                tf.constant(f.reshape(shape), tf.float32),
                stat.target(Moments.of(tf.constant(g.reshape(shape), tf.float32))),
            )
        )
        * channels
    )


@pytest.mark.parametrize("positions,channels", [(400, 8), (200, 32), (12, 32)], ids=["spd", "spd-32", "rank-deficient"])
def test_wasserstein_matches_scipy_sqrtm(positions, channels):
    rng = np.random.default_rng(positions + channels)
    mix_f, mix_g = rng.normal(size=(channels, channels)), rng.normal(size=(channels, channels))
    f = rng.normal(size=(positions, channels)) @ mix_f + 1.0
    g = rng.normal(size=(positions, channels)) @ mix_g * 2 - 0.5
    expected = scipy_w2(f, g)
    assert expected > 1
    assert w2(f, g) == pytest.approx(expected, rel=1e-3)
    # Identical statistics: 0, to float32 rounding of the traces it cancels.
    scale = np.trace(np.cov(g, rowvar=False))
    assert abs(w2(g, g)) < 1e-4 * scale


def test_wasserstein_gradient_is_finite_and_nonzero_when_statistics_differ():
    """Rank-deficient covariances (fewer positions than channels) once meant an unbounded slope,
    and a floor inside the root that made the distance negative and the clamped loss flat 0."""
    from nstyle.losses import WassersteinStyle

    stat = WassersteinStyle()
    rng = np.random.default_rng(3)
    target = stat.target(Moments.of(tf.constant(rng.normal(size=(1, 3, 4, 32)), tf.float32)))
    near = tf.Variable(rng.normal(size=(1, 3, 4, 32)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = stat.loss(near, target)
    grad = tape.gradient(loss, near).numpy()
    assert float(loss) > 0
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    # A few gradient steps lower it, and it never reaches a flat 0 on the way.
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = stat.loss(near, target)
        near.assign_sub(0.05 * tape.gradient(loss, near))
    assert 0 < float(stat.loss(near, target)) < float(loss) * 1.01
