"""Shared fixtures: tiny images and seeded random weights, so nothing is ever downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "images"
CONTENT = SAMPLES / "content" / "chelsea.jpg"
STYLE = SAMPLES / "style" / "starry_night.jpg"

# Fast, offline settings every stylize test can start from.
TINY = {"weights": "random:0", "size": 64, "iterations": 4}


def cli_args(out: Path | str, flags: str = "", content: Path | str = CONTENT, style: Path | str = STYLE) -> list[str]:
    """The argv of ``nstyle CONTENT STYLE -o OUT FLAGS``, the flags written as one would type them."""
    return [str(content), str(style), "-o", str(out), *flags.split()]


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path_factory):
    """Point Keras's cache at an empty folder and make any download fail at once."""
    import urllib.error

    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras_home"))
    monkeypatch.setenv("NSTYLE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nstyle_cache"))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    import keras.src.utils.file_utils as file_utils

    monkeypatch.setattr(file_utils, "urlretrieve", refuse)


@pytest.fixture
def rgb_file(tmp_path) -> Path:
    """A 48x40 RGB PNG with some structure."""
    yy, xx = np.mgrid[0:40, 0:48]
    a = np.stack([xx * 5, yy * 6, (xx + yy) * 3], -1).astype(np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(a).save(path)
    return path


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tensor(array, dtype: str = "float32"):
    """An array as a tensor of the running Keras backend (tests run on whichever KERAS_BACKEND names)."""
    from nstyle.backends import load_keras

    return load_keras().ops.convert_to_tensor(np.asarray(array, dtype))


def numpy(value) -> np.ndarray:
    """A backend tensor as a NumPy array."""
    from nstyle.backends import ops

    return np.asarray(ops().to_numpy(value))


def value_and_gradient(fn, x) -> tuple[np.ndarray, np.ndarray]:
    """``fn(x)`` (a scalar tensor) and its gradient with respect to ``x``, as NumPy, on the running backend."""
    from nstyle.backends import ops

    value, _, grad = ops().value_and_grad(lambda x: (fn(x), ()))(tensor(x))
    return numpy(value), numpy(grad)


def backend_name() -> str:
    from nstyle.backends import current

    return current()
