"""Pictures that wrap and the look size: the seam metric, circular features, the scales a look size makes."""

import numpy as np
import pytest
from PIL import Image

from nstyle.config import resolve
from nstyle.errors import ConfigError
from nstyle.wrap import calm_offsets, roll_offset, seam_score, seamless, tiled

from ..conftest import CONTENT, numpy, tensor

rng = np.random.default_rng(5)


def test_the_seam_metric_is_about_one_for_a_periodic_picture_and_large_for_a_photo():
    from scipy.ndimage import gaussian_filter

    periodic = gaussian_filter(rng.normal(size=(256, 256, 3)), (2, 2, 0), mode="wrap")  # noise that wraps
    assert seam_score(periodic) == pytest.approx(1.0, abs=0.15)
    assert seam_score(gaussian_filter(rng.normal(size=(256, 256, 3)), (2, 2, 0))) > 2.5
    assert seam_score(Image.open(CONTENT).convert("RGB")) > 2.5


def test_tiled_repeats_the_picture():
    picture = Image.fromarray(rng.integers(0, 256, (10, 14, 3)).astype(np.uint8))
    wall = np.asarray(tiled(picture, 3, 2))
    assert wall.shape == (20, 42, 3)
    np.testing.assert_array_equal(wall[10:, 28:], np.asarray(picture))


def test_a_seamless_photo_wraps_and_keeps_its_middle():
    photo = np.asarray(Image.open(CONTENT).convert("RGB"), np.float32)
    h, w = photo.shape[:2]
    rows, cols = calm_offsets(photo)
    wrapped = seamless(photo)
    # across the wrap it now steps as the photo does between the two lines the roll brought together
    across = np.abs(wrapped[:, 0] - wrapped[:, -1]).mean()
    assert across < 1.25 * np.abs(photo[:, w - cols] - photo[:, w - 1 - cols]).mean()  # the rows pass mixes it a little
    assert across < 0.3 * np.abs(photo[:, 0] - photo[:, -1]).mean()
    assert seam_score(wrapped) < 0.3 * seam_score(photo)
    middle = (slice(h // 4 + 1, -h // 4 - 1), slice(w // 4 + 1, -w // 4 - 1))
    np.testing.assert_allclose(wrapped[middle], photo[middle])
    assert seam_score(np.roll(wrapped, (h // 3, w // 3), (0, 1))) < 0.3 * seam_score(photo)  # no seam moved inside


def test_the_roll_puts_the_wrap_on_the_calmest_line_it_may():
    picture = rng.uniform(0, 255, (64, 96, 3)).astype(np.float32)
    picture[:, 50:58] = 128  # calm columns 50-57; and row 40 repeats row 39
    picture[40] = picture[39]
    rows, cols = calm_offsets(picture)
    assert 96 - 1 - cols >= 50 and 96 - cols <= 57  # the wrap joins two calm columns
    assert 64 - rows == 40
    assert (
        64 // 4 < rows < 64 - 64 // 4 and 96 // 4 < cols < 96 - 96 // 4
    )  # the rolled seam stays in the untouched middle
    assert calm_offsets(np.zeros((3, 3, 3))) == (1, 1)  # too small for a band: half


def test_roll_offsets_are_whole_feature_positions():
    for _ in range(20):
        dy, dx = roll_offset(rng, 96, 160, 32)
        assert dy % 32 == 0 and dx % 32 == 0 and 0 <= dy < 96 and 0 <= dx < 160


def test_wrapped_features_are_those_of_the_picture_repeated():
    """Padding circularly by the whole image is the image tiled 3x3: the middle copy's features."""
    from nstyle.backbones import REGISTRY, FeatureExtractor, load_model

    extractor = FeatureExtractor(REGISTRY["vgg16"], load_model("vgg16", "random:0"), ["block3_conv1"])
    image = rng.normal(size=(1, 64, 64, 3)).astype(np.float32) * 50
    wrapped = numpy(extractor(tensor(image), wrap=64)["block3_conv1"])
    wall = numpy(extractor(tensor(np.tile(image, (1, 3, 3, 1))))["block3_conv1"])
    np.testing.assert_allclose(wrapped, wall[:, 16:32, 16:32], rtol=1e-4, atol=1e-3)
    plain = numpy(extractor(tensor(image))["block3_conv1"])
    assert np.abs(plain - wrapped)[:, 0].mean() > 10 * np.abs(plain - wrapped)[:, 6:10, 6:10].mean()


def test_a_look_size_climbs_from_it_to_the_size():
    cfg = resolve("lite0", overrides={"size": 1536, "look_size": 512, "scale_factor": 2})
    assert cfg.scale_sizes == [512, 887, 1536] and cfg.scale_count == 3
    assert cfg.total_iterations == 3 * cfg.iterations
    assert resolve("lite0", overrides={"size": 512, "look_size": 512}).scale_sizes == [512]
    more = resolve("lite0", overrides={"size": 1024, "look_size": 512, "scale_factor": 2, "scales": 3})
    assert more.scale_sizes == [256, 512, 1024]  # scales beyond the look size's go below it
    same = resolve("lite0", overrides={"size": 4096, "scales": 4, "scale_factor": 2})  # lite0's own look size: 512
    assert same.scale_sizes == [512, 1024, 2048, 4096]
    plain = resolve("lite0", overrides={"size": 1024, "scales": 3, "scale_factor": 2})
    assert plain.scale_sizes == [256, 512, 1024]


def test_tileable_settings_are_checked():
    assert resolve("seed", overrides={"tileable": "roll"}).tileable == "roll"
    with pytest.raises(ConfigError, match="L-BFGS"):
        resolve("lite0", overrides={"tileable": "roll"})
    with pytest.raises(ConfigError, match="tileable"):
        resolve("default", overrides={"tileable": "yes"})
    with pytest.raises(ConfigError, match="scale_iterations: 2 values for 3 scales"):
        resolve("lite0", overrides={"size": 1536, "look_size": 512, "scale_factor": 2, "scale_iterations": [5, 5]})
