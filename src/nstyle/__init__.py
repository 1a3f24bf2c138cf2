"""nstyle: neural style transfer on Keras backbones, with ResNet50 first.

``nstyle.stylize(content, style, **options)`` is the whole pipeline; the modules follow it:
``io`` -> ``backbones`` -> ``losses`` -> ``optimize`` -> ``api`` -> ``cli``.
Keras and its backend (:mod:`nstyle.backends`) are imported on first use of ``stylize``, not on
``import nstyle``.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .config import Config, LayerSpec, resolve
from .errors import NStyleError
from .outcome import Ending, Outcome, Stop

__all__ = [
    "Config",
    "Ending",
    "LayerSpec",
    "NStyleError",
    "Outcome",
    "Stop",
    "StylizeResult",
    "resolve",
    "resume",
    "stylize",
    "texture",
    "tune",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in ("stylize", "StylizeResult", "texture"):
        from . import api

        return getattr(api, name)
    if name == "tune":  # the search over settings, judged by another network
        from .workflows.tune import tune

        return tune
    if name == "resume":  # any checkpoint: an image's, a video's, a batch's
        from . import jobs

        return jobs.resume
    raise AttributeError(f"module 'nstyle' has no attribute {name!r}")
