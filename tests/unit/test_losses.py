import numpy as np
import pytest

from nstyle.backends import load_keras
from nstyle.losses import Moments, content_loss, gram_matrix, style_loss, total_variation

from ..conftest import numpy, tensor, value_and_gradient

K = load_keras().ops

rng = np.random.default_rng(0)


def np_gram(f):
    a = f.reshape(-1, f.shape[-1])
    return a.T @ a / a.shape[0]


def test_gram_matches_numpy():
    f = rng.normal(size=(1, 5, 7, 4)).astype(np.float32)
    np.testing.assert_allclose(numpy(gram_matrix(tensor(f))), np_gram(f), rtol=1e-5, atol=1e-6)


def test_content_and_style_match_numpy():
    f, g = (rng.normal(size=(1, 6, 3, 5)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(numpy(content_loss(tensor(f), tensor(g))), np.mean((f - g) ** 2), rtol=1e-5)
    target = np_gram(g)
    expected = np.mean((np_gram(f) - target) ** 2)
    np.testing.assert_allclose(numpy(style_loss(tensor(f), tensor(target))), expected, rtol=1e-5)


def test_total_variation_matches_numpy():
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    expected = np.mean((x[:, 1:] - x[:, :-1]) ** 2) + np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2)
    np.testing.assert_allclose(numpy(total_variation(tensor(x))), expected, rtol=1e-5)
    assert numpy(total_variation(tensor(np.zeros((1, 4, 4, 3))))) == 0


def test_wrapped_total_variation_counts_the_wrap_as_neighbours():
    x = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
    rows, cols = np.concatenate([x, x[:, :1]], 1), np.concatenate([x, x[:, :, :1]], 2)
    expected = np.mean(np.diff(rows, axis=1) ** 2) + np.mean(np.diff(cols, axis=2) ** 2)
    np.testing.assert_allclose(numpy(total_variation(tensor(x), wrap=True)), expected, rtol=1e-5)


def test_style_loss_ignores_position_but_content_does_not():
    f = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    shuffled = f.reshape(16, 3)[rng.permutation(16)].reshape(1, 4, 4, 3)
    assert numpy(style_loss(tensor(shuffled), gram_matrix(tensor(f)))) == pytest.approx(0, abs=1e-6)
    assert numpy(content_loss(tensor(shuffled), tensor(f))) > 0.1


def test_gram_gradient_matches_numpy():
    """The hand-written one-matmul gradient of the Gram matrix, against d/dF sum((G - T)^2) in numpy."""
    f = rng.normal(size=(1, 6, 5, 4)).astype(np.float64)
    t = rng.normal(size=(4, 4))
    _, grad = value_and_gradient(lambda x: K.sum(K.square(gram_matrix(x) - tensor(t))), f)
    a = f.reshape(-1, 4)
    upstream = 2 * (a.T @ a / a.shape[0] - t)  # dL/dG, symmetric here
    expected = (a @ (upstream + upstream.T) / a.shape[0]).reshape(f.shape)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_tv_is_reported_at_weight_zero_and_differentiated_only_when_weighted():
    from nstyle.backbones import REGISTRY, FeatureExtractor, load_model
    from nstyle.losses import StyleTransferLoss, Terms, WeightedLayer

    extractor = FeatureExtractor(REGISTRY["vgg16"], load_model("vgg16", "random:0"), ["block1_conv2"])
    image = tensor(rng.uniform(-100, 100, (1, 16, 16, 3)).astype(np.float32))
    layer = [WeightedLayer("block1_conv2", 1.0)]

    def value_and_grad(tv_weight):
        loss = StyleTransferLoss(extractor, Terms(layer, layer, 1.0, 1.0, tv_weight), image, [image])
        _, grad = value_and_gradient(lambda x: loss(x)["total"], numpy(image) + 1.0)
        return loss(image + 1.0), grad

    off, grad_off = value_and_grad(0.0)
    on, grad_on = value_and_grad(0.5)
    assert float(off["tv"]) == pytest.approx(float(total_variation(image + 1.0)), rel=1e-5)
    _, tv_grad = value_and_gradient(total_variation, numpy(image) + 1.0)
    np.testing.assert_allclose(grad_on - grad_off, 0.5 * tv_grad, rtol=1e-3, atol=1e-3)


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
                tensor(f.reshape(shape)),
                stat.target(Moments.of(tensor(g.reshape(shape)))),
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
    target = stat.target(Moments.of(tensor(rng.normal(size=(1, 3, 4, 32)))))
    near = rng.normal(size=(1, 3, 4, 32)).astype(np.float32)
    loss, grad = value_and_gradient(lambda x: stat.loss(x, target), near)
    assert float(loss) > 0
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    # A few gradient steps lower it, and it never reaches a flat 0 on the way.
    for _ in range(20):
        loss, grad = value_and_gradient(lambda x: stat.loss(x, target), near)
        near = near - 0.05 * grad
    assert 0 < float(stat.loss(tensor(near), target)) < float(loss) * 1.01
