"""Masked statistics, the histogram term and regions, each against a NumPy reference."""

import numpy as np
import pytest
from PIL import Image

from nstyle.config import resolve
from nstyle.errors import ConfigError, ImageError
from nstyle.losses import (
    QUANTILES,
    STYLE_LOSSES,
    CombinedStyle,
    HistogramStyle,
    Moments,
    statistic_of,
)
from nstyle.regions import Regions, load_regions

from ..conftest import numpy, tensor, value_and_gradient

rng = np.random.default_rng(3)


def features(positions=(6, 7), channels=5, scale=1.0):
    return (rng.normal(size=(1, *positions, channels)) * scale + rng.normal(size=channels)).astype(np.float32)


def np_histogram_loss(f: np.ndarray, quantiles: np.ndarray) -> tuple[float, np.ndarray]:
    """Risser et al.'s |O - R(O)|^2 (mean over values) and R(O): each channel sorted and read
    off the style's quantiles at the same ranks."""
    flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
    n, q = flat.shape[0], quantiles.shape[0]
    remapped = np.empty_like(flat)
    for c in range(flat.shape[1]):
        order = np.argsort(flat[:, c])
        levels = (np.arange(n) + 0.5) / n * q - 0.5
        remapped[order, c] = np.interp(levels, np.arange(q), quantiles[:, c])
    return float(np.mean((flat - remapped) ** 2)), remapped.reshape(f.shape)


def test_histogram_targets_are_the_styles_quantiles():
    style = features((30, 40), 4)
    (target,) = HistogramStyle().target(Moments.of(tensor(style), keep_values=True))
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    np.testing.assert_allclose(numpy(target), np.quantile(style.reshape(-1, 4), levels, axis=0), rtol=1e-5)


def test_histogram_loss_and_gradient_match_the_remapping():
    """The value is the mean squared distance to the remapped activations, and the gradient
    (through the sort) is 2 (O - R(O)) / N: R(O) held fixed, as the paper's."""
    style, f = features((20, 30), 3, 2.0), features((6, 7), 3)
    (target,) = HistogramStyle().target(Moments.of(tensor(style), keep_values=True))
    expected, remapped = np_histogram_loss(f, numpy(target))
    value, grad = value_and_gradient(lambda x: HistogramStyle().loss(x, (target,)), f)
    assert value == pytest.approx(expected, rel=1e-4)
    np.testing.assert_allclose(grad, 2 * (f - remapped) / f.size, rtol=1e-3, atol=1e-6)


def test_histogram_loss_is_zero_for_the_style_itself_and_blind_to_position():
    style = features((16, 16), 3)
    (target,) = HistogramStyle().target(Moments.of(tensor(style), keep_values=True))
    shuffled = style.reshape(-1, 3)[rng.permutation(256)].reshape(style.shape)
    assert numpy(HistogramStyle().loss(tensor(shuffled), (target,))) < 1e-3 * np.var(style)
    assert numpy(HistogramStyle().loss(tensor(style * 2), (target,))) > 0.1


@pytest.mark.parametrize("name", ["gram", "meanstd", "wasserstein", "histogram"])
def test_a_region_of_zeros_and_ones_is_the_statistic_of_the_positions_it_keeps(name):
    """A 0/1 mask gives exactly the loss of the selected positions alone."""
    statistic = STYLE_LOSSES[name]
    style, f = features((12, 12), 4, 1.5), features((6, 8), 4)
    target = tuple(statistic.target(Moments.of(tensor(style), keep_values=True)))
    keep = np.zeros((1, 6, 8, 1), np.float32)
    keep[:, 1:5, 2:7] = 1
    selected = f[:, 1:5, 2:7, :]
    masked = numpy(statistic.loss(tensor(f), target, tensor(keep)))
    alone = numpy(statistic.loss(tensor(selected), target))
    assert masked == pytest.approx(alone, rel=2e-3, abs=1e-6)


def test_soft_weights_count_positions_partly():
    """A weight of 1/2 on a position counts it half: the Gram matrix of the weighted mean."""
    style, f = features((10, 10), 3), features((2, 3), 3)
    (target,) = STYLE_LOSSES["gram"].target(Moments.of(tensor(style)))
    weights = np.array([1, 0.5, 1, 1, 0.25, 0], np.float32).reshape(1, 2, 3, 1)
    flat, w = f.reshape(-1, 3).astype(np.float64), weights.reshape(-1, 1)
    gram = (flat * w).T @ flat / w.sum()
    expected = np.mean((gram - numpy(target)) ** 2)
    assert numpy(STYLE_LOSSES["gram"].loss(tensor(f), (target,), tensor(weights))) == pytest.approx(expected, rel=1e-4)


def test_combined_losses_put_the_histogram_in_the_first_statistics_units():
    style, f = features((12, 12), 4, 3.0), features((5, 5), 4)
    combined = statistic_of("gram+histogram", 0.5)
    assert isinstance(combined, CombinedStyle)
    target = combined.target(Moments.of(tensor(style), keep_values=True))
    gram_t, hist_t = numpy(target[0]), numpy(target[1])
    ratio = np.mean(gram_t**2) / np.mean(hist_t**2)  # each loss at a blank feature map
    gram = float(numpy(STYLE_LOSSES["gram"].loss(tensor(f), (target[0],))))
    hist, _ = np_histogram_loss(f, hist_t)
    assert numpy(combined.loss(tensor(f), target)) == pytest.approx(gram + 0.5 * ratio * hist, rel=1e-3)


def test_disjoint_regions_keep_full_weight_and_overlaps_follow_the_blend():
    a = np.zeros((4, 6), np.float32)
    a[:, :4] = 1
    b = np.zeros((4, 6), np.float32)
    b[:, 2:] = 1
    regions = Regions(np.stack([a, b], -1), (3.0, 1.0))
    w = regions.weights
    np.testing.assert_allclose(w[:, :2, 0], 1)  # style 1's own part
    np.testing.assert_allclose(w[:, 4:, 1], 1)  # style 2's own part
    np.testing.assert_allclose(w[:, 2:4], np.broadcast_to([0.75, 0.25], (4, 2, 2)))
    assert regions.shares == pytest.approx([(8 + 8 * 0.75) / 16, (8 + 8 * 0.25) / 16])
    same = Regions(np.stack([a, a], -1), (1.0, 1.0))
    assert same.shares == pytest.approx([0.5, 0.5])  # one region, two styles: the unmasked 50/50 blend


def test_keep_photo_is_the_photo_where_black_and_the_result_inside_the_region():
    mask = np.zeros((60, 80), np.float32)
    mask[:, 40:] = 1
    regions = Regions(mask[..., None], (1.0,))
    photo = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    result = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    out = regions.keep_photo(result, photo)
    np.testing.assert_array_equal(out[:, :40], photo[:, :40])
    np.testing.assert_array_equal(out[:, 45:], result[:, 45:])  # feathered only just inside the edge
    high = regions.keep_photo(result.astype(np.uint16) * 257, photo)
    np.testing.assert_array_equal(high[:, :40], photo[:, :40].astype(np.uint16) * 257)


def test_masks_are_resized_to_the_photo_and_bad_ones_refused(tmp_path):
    white, black = tmp_path / "white.png", tmp_path / "black.png"
    Image.new("L", (20, 10), 255).save(white)
    Image.new("L", (20, 10), 0).save(black)
    regions = load_regions(str(white), (), 2, (), (64, 32))
    assert regions.masks.shape == (32, 64, 2) and regions.masks.min() == 1
    with pytest.raises(ImageError, match="black everywhere"):
        load_regions(str(black), (), 1, (), (64, 32))
    left, right = tmp_path / "left.png", tmp_path / "right.png"
    half = np.zeros((10, 20), np.uint8)
    half[:, :6] = 255
    Image.fromarray(half).save(left)
    Image.fromarray(half[:, ::-1]).save(right)
    with pytest.raises(ImageError, match="do not overlap"):
        load_regions(str(left), (str(white), str(right)), 2, (), (64, 32))


def test_config_reads_combined_losses_and_mask_paths(tmp_path):
    mask = tmp_path / "m.png"
    Image.new("L", (8, 8), 255).save(mask)
    cfg = resolve("default", overrides={"style_loss": "gram+histogram", "mask": str(mask)})
    assert cfg.style_loss == "gram+histogram" and cfg.masked and cfg.mask == str(mask.resolve())
    assert resolve("default", overrides=cfg.to_dict()) == cfg
    assert "mask" not in cfg.task_dict() and not resolve("default").to_dict().get("mask")
    for bad, words in [("gram+gram", "twice"), ("gram+", "is not one of"), ("histogram+meanstd", None)]:
        if words is None:
            assert resolve("default", overrides={"style_loss": bad}).style_loss == bad
            continue
        with pytest.raises(ConfigError, match=words):
            resolve("default", overrides={"style_loss": bad})
