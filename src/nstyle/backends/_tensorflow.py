"""TensorFlow: a step is one ``tf.function``, and the gradient comes from a ``GradientTape``.

The default backend, and the fastest on a CPU: its networks get the forward-kernel input
gradients (:mod:`nstyle.backbones.gradients`), which only TensorFlow has.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..hardware import usable_cores
from . import quiet_import

tf = quiet_import("tensorflow")


def value_and_grad(fn: Callable) -> Callable:
    """``fn(x, *args) -> (total, aux)`` as ``(x, *args) -> (total, aux, d total / d x)``."""

    def evaluate(x, *args):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total, aux = fn(x, *args)
        return total, aux, tape.gradient(total, x)

    return evaluate


#: Whether one compiled function serves inputs of every size (``compile(..., any_shape=True)``).
GENERALISES_SHAPES = True


def compile(fn: Callable, any_shape: bool = False) -> Callable:
    """``fn`` as one graph: traced for its first call's shapes, or with ``any_shape`` for inputs
    whose every dimension may vary (each argument's structure and ranks fixed by the first call).
    No AutoGraph: the engine's branches are on Python values, decided when traced."""
    return AnyShape(fn) if any_shape else tf.function(fn, autograph=False)


class AnyShape:
    """A ``tf.function`` whose signature, made at the first call, leaves every dimension open."""

    def __init__(self, fn: Callable):
        self.fn, self.compiled = fn, None

    def __call__(self, *args):
        if self.compiled is None:
            spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * len(t.shape), t.dtype), list(args))
            self.compiled = tf.function(self.fn, input_signature=spec, autograph=False)
        return self.compiled(*args)

    def tracing_count(self) -> int:
        return 0 if self.compiled is None else self.compiled.experimental_get_tracing_count()


def matmul(a, b):
    return tf.matmul(a, b)


def matmul_tn(a, b):
    """``a^T b`` in one kernel call, no transposed copy."""
    return tf.matmul(a, b, transpose_a=True)


def pad_symmetric(x, bottom, right):
    """Mirror an NHWC batch at its bottom and right edges (sizes may be graph tensors)."""
    return tf.pad(x, [[0, 0], [0, bottom], [0, right], [0, 0]], mode="SYMMETRIC")


def crop(x, height, width):
    """The top-left ``height`` x ``width`` of an NHWC batch. ``tf.slice``, not indexing: a strided
    slice's gradient is a costly scatter, a slice's is a pad."""
    return tf.slice(x, [0, 0, 0, 0], [-1, height, width, -1])


_SKIPPED_OPS = {"Const", "ReadVariableOp", "Placeholder", "VarHandleOp", "Identity", "NoOp"}


def intermediate_floats(fn: Callable, probe: np.ndarray) -> int:
    """Floats in every intermediate tensor of ``fn(probe)``'s graph: what a forward pass keeps."""
    graph = tf.function(fn).get_concrete_function(tf.TensorSpec(probe.shape, tf.float32)).graph
    return sum(
        o.shape.num_elements()
        for op in graph.get_operations()
        if op.type not in _SKIPPED_OPS
        for o in op.outputs
        if o.dtype.is_floating and o.shape.is_fully_defined()
    )


def to_numpy(tensor) -> np.ndarray:
    return np.asarray(tensor)


def devices() -> list[str]:
    gpus = [d.name.removeprefix("/physical_device:") for d in tf.config.list_physical_devices("GPU")]
    return gpus or ["CPU"]


def gpu_list() -> list[tuple[str, tuple[int, int] | None]]:
    """Each GPU's name and compute capability, as TensorFlow reports them."""
    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        found.append((details.get("device_name", device.name), details.get("compute_capability")))
    return found


def reset_peak_memory() -> None:
    """Start counting the GPU's peak memory afresh (nothing on a CPU)."""
    if has_gpu():
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_gb() -> float | None:
    """The GPU's peak memory since :func:`reset_peak_memory`; None on a CPU."""
    return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30, 2) if has_gpu() else None


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def forward_kernel_gradients() -> bool:
    """Whether the networks may take :mod:`~nstyle.backbones.gradients`' convolutions (CPU only)."""
    return not has_gpu()


def threads() -> int:
    """The intra-op threads: what was set, or the usable cores TensorFlow defaults to."""
    return tf.config.threading.get_intra_op_parallelism_threads() or usable_cores()


def limit_threads(count: int) -> None:
    """At most ``count`` intra-op threads and one inter-op (a worker's share of the cores)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started here (e.g. in-process runs): keep its pools
        pass


def use_all_cores() -> int:
    """Intra-op threads set to the usable cores (the affinity mask, not the machine's count).

    TensorFlow's default can be the machine's core count, which oversubscribes a container's
    share. Once its runtime has started the setting is fixed, and the threads it has are kept.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(usable_cores())
    except RuntimeError:  # the runtime is already up (a test, a notebook)
        pass
    return threads()
