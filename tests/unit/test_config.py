import math

import pytest

from nstyle.config import Config, LayerSpec, load_preset, preset_names, resolve
from nstyle.errors import ConfigError


def test_seed_preset_is_the_notebook_exactly():
    cfg = resolve("seed")
    assert cfg.backbone == "resnet50" and cfg.weights == "imagenet"
    assert [s.name for s in cfg.content_layers] == ["conv1"]
    assert [s.name for s in cfg.style_layers] == ["bn2b_branch2a", "bn3a_branch2c", "res3a_branch1", "bn4e_branch2b"]
    assert all(s.weight == 1.0 for s in (*cfg.content_layers, *cfg.style_layers))
    assert (cfg.style_weight, cfg.content_weight, cfg.tv_weight) == (1e6, 1.0, 0.0)
    assert (cfg.optimizer, cfg.lr, cfg.beta1, cfg.epsilon) == ("adam", 20.0, 0.99, 0.1)
    assert (cfg.iterations, cfg.size, cfg.init) == (1000, 512, "content")


def test_tutorial_vgg19_preset():
    cfg = resolve("tutorial-vgg19")
    assert cfg.backbone == "vgg19"
    assert [s.name for s in cfg.content_layers] == ["block5_conv2"]
    assert [s.name for s in cfg.style_layers] == [f"block{i}_conv1" for i in range(1, 6)]
    assert (cfg.content_weight, cfg.style_weight, cfg.beta1, cfg.iterations) == (1e4, 1e-2, 0.99, 1000)
    # The tutorial's Adam on a [0, 1] image, converted to pixels: lr x 255, epsilon / 255.
    assert (cfg.lr, cfg.epsilon) == (pytest.approx(0.02 * 255), pytest.approx(0.1 / 255, rel=1e-3))


def test_every_preset_validates():
    assert {"seed", "tutorial-vgg19", "default"} <= set(preset_names())
    for name in preset_names():
        Config.from_dict(load_preset(name))


def test_precedence_preset_then_file_then_flags(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('lr = 3.0\niterations = 7\nstyle_layers = ["conv1_relu:0.5", "conv2_block1_out"]\n')
    cfg = resolve("seed", path, {"iterations": 9})
    assert cfg.lr == 3.0  # file beats preset
    assert cfg.iterations == 9  # flag beats file
    assert cfg.style_weight == 1e6  # preset survives
    assert cfg.style_layers == (LayerSpec("conv1_relu", 0.5), LayerSpec("conv2_block1_out", 1.0))


def test_round_trip_through_dict():
    cfg = resolve("seed", overrides={"style_layers": ["a:0.25", "b"], "seed": 3})
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("style_weight", math.nan, "style_weight"),
        ("content_weight", -1.0, "content_weight"),
        ("tv_weight", math.inf, "tv_weight"),
        ("lr", 0.0, "lr"),
        ("beta1", 1.0, "beta1"),
        ("iterations", 0, "iterations"),
        ("iterations", 2.5, "iterations"),
        ("size", 1, "size"),
        ("size", 100000, "size"),
        ("optimizer", "sgd", "optimizer"),
        ("init", "zeros", "init"),
        ("backbone", "resnet51", "backbone"),
        ("weights", "random:x", "weights"),
        ("weights", "/no/such/file.h5", "weights"),
        ("style_layers", ["conv1:nan"], "style_layers"),
        ("style_layers", ["conv1:-2"], "style_layers"),
        ("style_layers", ["conv1", "conv1"], "style_layers"),
        ("style_layers", [], "style_layers"),
        ("lr", True, "lr"),
        ("colour", 1, "colour"),
    ],
)
def test_bad_values_name_their_key(key, value, words):
    with pytest.raises(ConfigError) as info:
        resolve("seed", overrides={key: value})
    message = str(info.value)
    assert words in message and "\n" not in message


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve("seed", bad)
    with pytest.raises(ConfigError, match="no such file"):
        resolve("seed", tmp_path / "missing.toml")


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "efficientnet_lite0"])
def test_a_backbone_alone_brings_its_own_layers(backbone):
    from nstyle.backbones import REGISTRY, describe_layers, resolve_layer

    entry = REGISTRY[backbone]
    preset = "lite0" if backbone != "efficientnet_lite0" else "default"  # a preset made for another network
    cfg = resolve(preset, overrides={"backbone": backbone})
    assert [s.name for s in cfg.content_layers] == list(entry.content_layers)
    assert [s.name for s in cfg.style_layers] == list(entry.style_layers)
    names = [info.name for info in describe_layers(backbone)]
    for name in (*entry.content_layers, *entry.style_layers):
        resolve_layer(entry, names, name)  # raises for a name the network lacks
    # Layers given beside the backbone win; the preset's own backbone keeps the preset's layers.
    given = resolve(preset, overrides={"backbone": backbone, "style_layers": [entry.content_layers[0]]})
    assert [s.name for s in given.style_layers] == [entry.content_layers[0]]
    assert [s.name for s in resolve("seed", overrides={"backbone": "resnet50"}).style_layers][0] == "bn2b_branch2a"


def test_hed_weights_only_for_vgg16():
    assert resolve("default", overrides={"backbone": "vgg16", "weights": "hed"}).weights == "hed"
    with pytest.raises(
        ConfigError, match="'hed' is the HED edge detector's VGG16 body; it fits --backbone vgg16, not resnet50"
    ):
        resolve("default", overrides={"weights": "hed"})
