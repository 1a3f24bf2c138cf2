"""JAX: a step is one ``jax.jit``-compiled function, the gradient ``jax.value_and_grad``.

64-bit floats are enabled: the Wasserstein style loss computes covariances and their roots
in float64 (see :class:`nstyle.losses.WassersteinStyle`), which JAX otherwise silently makes
float32. Keras's layers ask for float32 explicitly, so the networks are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..hardware import usable_cores
from . import quiet_import

jax = quiet_import("jax")
jax.config.update("jax_enable_x64", True)


def value_and_grad(fn: Callable) -> Callable:
    """``fn(x, *args) -> (total, aux)`` as ``(x, *args) -> (total, aux, d total / d x)``."""
    gradient = jax.value_and_grad(fn, has_aux=True)

    def evaluate(x, *args):
        (total, aux), grad = gradient(x, *args)
        return total, aux, grad

    return evaluate


#: Whether one compiled function serves inputs of every size: XLA compiles one program per shape.
GENERALISES_SHAPES = False


def compile(fn: Callable, any_shape: bool = False) -> Callable:
    """``fn`` as XLA programs, one per set of input shapes (``any_shape`` changes nothing)."""
    return jax.jit(fn)


def matmul(a, b):
    return jax.numpy.matmul(a, b)


def matmul_tn(a, b):
    """``a^T b`` (XLA folds the transpose into the matmul)."""
    return jax.numpy.matmul(a.T, b)


def pad_symmetric(x, bottom, right):
    """Mirror an NHWC batch at its bottom and right edges."""
    return jax.numpy.pad(x, [(0, 0), (0, bottom), (0, right), (0, 0)], mode="symmetric")


def crop(x, height, width):
    """The top-left ``height`` x ``width`` of an NHWC batch."""
    return x[:, :height, :width, :]


def intermediate_floats(fn: Callable, probe: np.ndarray) -> int:
    """Floats in every intermediate value of ``fn(probe)``'s jaxpr: what a forward pass keeps."""
    jaxpr = jax.make_jaxpr(fn)(probe)

    def floats(eqns) -> int:
        total = 0
        for eqn in eqns:
            for var in eqn.outvars:
                aval = var.aval
                if jax.numpy.issubdtype(aval.dtype, jax.numpy.floating):
                    total += int(np.prod(aval.shape))
            for value in eqn.params.values():  # a nested program (jit, custom gradients) counts too
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    total += floats(inner.eqns)
        return total

    return floats(jaxpr.jaxpr.eqns)


def to_numpy(tensor) -> np.ndarray:
    return np.asarray(tensor)


def devices() -> list[str]:
    return [d.device_kind if d.platform == "gpu" else d.platform.upper() for d in jax.devices()]


def gpu_list() -> list[tuple[str, tuple[int, int] | None]]:
    """Each GPU's name and compute capability (``"9.0"`` in JAX's device), as JAX reports them."""
    found = []
    for device in jax.devices() if has_gpu() else []:
        capability = getattr(device, "compute_capability", None)
        major_minor = tuple(int(p) for p in str(capability).split(".")[:2]) if capability else None
        found.append((device.device_kind, major_minor))
    return found


def reset_peak_memory() -> None:
    """JAX keeps one peak per process and cannot reset it: :func:`peak_memory_gb` is the process's."""


def peak_memory_gb() -> float | None:
    """The GPU's peak memory in this process (XLA's allocator statistics); None on a CPU."""
    stats = jax.devices()[0].memory_stats() if has_gpu() else None
    return round(stats["peak_bytes_in_use"] / 2**30, 2) if stats else None


def has_gpu() -> bool:
    return jax.default_backend() == "gpu"


def forward_kernel_gradients() -> bool:
    return False


def threads() -> int:
    """XLA's CPU client uses every usable core; it has no setting to report."""
    return usable_cores()


def limit_threads(count: int) -> None:
    """XLA sizes its CPU thread pool when it starts and cannot be capped afterwards: a worker on
    JAX shares the cores with the others (``--workers`` pays less than on TensorFlow)."""


def use_all_cores() -> int:
    return threads()
