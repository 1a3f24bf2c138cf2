"""Which Keras backend runs the engine: TensorFlow, JAX or PyTorch.

Keras picks its backend once, when it is first imported, from ``KERAS_BACKEND``; so the choice
(``--backend``, the config's ``backend``, else ``KERAS_BACKEND``, else TensorFlow) is made by
:func:`select` before anything imports Keras. The engine's math is written in ``keras.ops``;
what Keras leaves to the backend (the gradient with respect to the image, compiling a step,
where tensors live, threads) is in one small module per backend, :func:`ops` returns it.
Nothing here imports a framework until it is asked about one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from ..errors import ConfigError

NAMES = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
_MODULES = {"tensorflow": "_tensorflow", "jax": "_jax", "torch": "_torch"}


def is_installed(name: str) -> bool:
    """Whether the framework behind backend ``name`` can be imported here."""
    return importlib.util.find_spec(name) is not None


def requested(name: str | None = None) -> str:
    """The backend asked for: ``name``, else ``KERAS_BACKEND``, else TensorFlow."""
    return name or os.environ.get("KERAS_BACKEND") or DEFAULT


def select(name: str | None = None) -> str:
    """Make ``name`` (or :func:`requested`'s) Keras's backend, before Keras is imported; return it.

    A backend that is not installed, or a different one already loaded in this process (Keras
    cannot switch), is a :class:`ConfigError`.
    """
    wanted = requested(name)
    if wanted not in NAMES:
        raise ConfigError(f"backend: unknown backend '{wanted}' (choose from {', '.join(NAMES)})")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != wanted:
            raise ConfigError(f"backend: Keras already runs on {loaded} in this process; '{wanted}' needs a new one")
        return wanted
    if not is_installed(wanted):
        extra = "" if wanted == DEFAULT else f"[{wanted}]"
        raise ConfigError(f"backend: {wanted} is not installed (pip install -e '.{extra}')")
    os.environ["KERAS_BACKEND"] = wanted
    return wanted


def quiet_import(module: str) -> ModuleType:
    """Import ``module`` with file descriptor 2 pointed at /dev/null meanwhile.

    TensorFlow's C++ side (and XLA's) prints notices straight to fd 2 while it loads, before
    any environment variable or Python logger can stop it; a tool whose errors must be one
    clean line on stderr cannot have that. Only the import is silenced.
    """
    if module in sys.modules:
        return sys.modules[module]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        loaded = importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if module == "tensorflow":
        loaded.get_logger().setLevel("ERROR")
    return loaded


def load_keras() -> ModuleType:
    """Keras, on the selected backend (imported quietly the first time).

    Where TensorFlow is installed, Keras imports it on any backend, lazily, the first time it
    serialises a layer's config (:mod:`~nstyle.backbones.folding` does); that import would
    print TensorFlow's notices, so it is made here, quietly, instead.
    """
    select()
    if "keras" not in sys.modules and is_installed("tensorflow"):
        quiet_import("tensorflow")  # on TensorFlow too: its logger is quietened there
    return quiet_import("keras")


def current() -> str:
    """The backend Keras runs on (importing Keras on the selected one if it is not loaded yet)."""
    return load_keras().backend.backend()


def ops() -> ModuleType:
    """The running backend's module: ``value_and_grad``, ``compile``, ``to_numpy``, ``devices``."""
    return importlib.import_module(f".{_MODULES[current()]}", __name__)


def threads() -> int:
    """The running backend's intra-op threads."""
    return ops().threads()


def use_all_cores() -> int:
    """The running backend's threads set to the usable cores; returns the threads in use."""
    return ops().use_all_cores()


@dataclass(frozen=True)
class Installed:
    """One row of ``nstyle info``'s backends: the framework's version and what it sees."""

    name: str
    version: str | None
    devices: str


def distribution_version(name: str) -> str | None:
    """The installed version of backend ``name``'s framework (None when it is not installed)."""
    for distribution in {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}[name]:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def backend_version() -> str | None:
    """The running backend's framework version."""
    return distribution_version(current())


def installed() -> list[Installed]:
    """Every backend with its version; the running one also says which devices it sees."""
    running = current()
    rows = []
    for name in NAMES:
        version = distribution_version(name) if is_installed(name) else None
        if version is None:
            devices = "not installed" + ("" if name == DEFAULT else f": pip install -e '.[{name}]'")
        elif name == running:
            devices = "running; sees " + ", ".join(ops().devices())
        else:
            devices = f"installed (--backend {name} or KERAS_BACKEND={name})"
        rows.append(Installed(name, version, devices))
    return rows
