"""PyTorch: steps run eagerly, the gradient from ``torch.autograd.grad``.

Keras's PyTorch backend runs layer by layer. ``torch.compile`` of the whole step was tried:
TorchDynamo breaks its graph at every Keras layer call (``Layer.__call__``'s Python bookkeeping)
and recompiles per layer until its limit, so the compiled step ran no faster than the eager
one on a CPU and cost minutes to compile; the step stays eager. This backend is for machines
where PyTorch is what works, GPUs above all, rather than for speed on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..hardware import usable_cores
from . import quiet_import

torch = quiet_import("torch")

#: Whether one compiled function serves inputs of every size: eager code serves every size.
GENERALISES_SHAPES = True


def value_and_grad(fn: Callable) -> Callable:
    """``fn(x, *args) -> (total, aux)`` as ``(x, *args) -> (total, aux, d total / d x)``."""

    def evaluate(x, *args):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            total, aux = fn(x, *args)
            (grad,) = torch.autograd.grad(total, x)
        detach = lambda t: t.detach() if isinstance(t, torch.Tensor) else t  # noqa: E731
        return total.detach(), torch.utils._pytree.tree_map(detach, aux), grad

    return evaluate


def compile(fn: Callable, any_shape: bool = False) -> Callable:
    """``fn`` itself: eager (see the module's docstring for why not ``torch.compile``)."""
    return fn


def matmul(a, b):
    """``a b`` in the inputs' dtype (Keras's ``ops.matmul`` on PyTorch computes float64 in float32)."""
    return torch.matmul(a, b)


def matmul_tn(a, b):
    return torch.matmul(a.transpose(0, 1), b)


def pad_symmetric(x, bottom, right):
    """Mirror an NHWC batch at its bottom and right edges (PyTorch pads only reflect or
    replicate, so the mirrored rows and columns are flipped copies)."""
    if bottom:
        x = torch.cat([x, torch.flip(x[:, -bottom:], dims=[1])], dim=1)
    if right:
        x = torch.cat([x, torch.flip(x[:, :, -right:], dims=[2])], dim=2)
    return x


def crop(x, height, width):
    return x[:, :height, :width, :]


def intermediate_floats(fn: Callable, probe: np.ndarray) -> int:
    """Floats in every tensor that ``fn(probe)``'s autograd graph keeps for its backward pass."""
    kept = []

    def pack(tensor):
        if tensor.is_floating_point():
            kept.append(tensor.numel())
        return tensor

    x = torch.as_tensor(probe).requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return int(sum(kept))


def to_numpy(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def devices() -> list[str]:
    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ["CPU"]


def gpu_list() -> list[tuple[str, tuple[int, int] | None]]:
    """Each CUDA GPU's name and compute capability, as PyTorch reports them."""
    if not torch.cuda.is_available():
        return []
    return [
        (torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
        for i in range(torch.cuda.device_count())
    ]


def reset_peak_memory() -> None:
    """Start counting the GPU's peak memory afresh (nothing on a CPU)."""
    if has_gpu():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gb() -> float | None:
    """The GPU's peak memory since :func:`reset_peak_memory`; None on a CPU."""
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if has_gpu() else None


def has_gpu() -> bool:
    return torch.cuda.is_available()


def forward_kernel_gradients() -> bool:
    return False


def threads() -> int:
    return torch.get_num_threads()


def limit_threads(count: int) -> None:
    """At most ``count`` intra-op threads (a worker's share of the cores)."""
    torch.set_num_threads(count)


def use_all_cores() -> int:
    """PyTorch's intra-op threads set to the usable cores (the affinity mask)."""
    torch.set_num_threads(usable_cores())
    return threads()
