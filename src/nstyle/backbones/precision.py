"""Which arithmetic the feature network runs in, chosen from what the hardware does fast.

Only the network runs in low precision: the image, the content and style targets, the
statistics (Gram, covariance, eigen-decompositions), the loss sum and the optimiser's state
stay float32. The network is where the time goes, and its features only need to be close;
the optimisation needs exact sums.

``auto`` picks bfloat16 where the CPU has bf16 matrix units (Intel AMX, or AVX512-BF16),
which convolve faster than in float32 (benchmarks/step_speed.py). Elsewhere the backend
emulates bfloat16 in float32 arithmetic plus conversions, which is slower than float32, so
``auto`` stays float32. On a GPU: bfloat16 from Ampere (compute
capability 8.0) on, float16 with loss scaling on Volta/Turing tensor cores, float32 before.

``auto`` keeps L-BFGS in float32 everywhere. Its curvature pairs and line search feed on exact
gradient differences, and bfloat16's 8-bit mantissa blurs them: L-BFGS presets end at a clearly
higher float32 loss in bfloat16, while Adam's come close (``benchmarks/precision_parity.py
--precision bfloat16``). Asked for explicitly, L-BFGS runs in any precision.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..hardware import usable_cores

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Cpu:
    """The host CPU as far as precision choices go."""

    name: str
    flags: frozenset[str]
    cores: int

    @property
    def bf16_units(self) -> str:
        """'AMX' or 'AVX512-BF16' when the CPU has bf16 matrix instructions, else ''."""
        if "amx_bf16" in self.flags:
            return "AMX"
        if "avx512_bf16" in self.flags:
            return "AVX512-BF16"
        return ""

    @property
    def vector_units(self) -> str:
        """The widest float vector instruction set, for the run's first line."""
        for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON")):
            if flag in self.flags:
                return label
        return "scalar"

    def describe(self) -> str:
        """E.g. 'AMD EPYC, 2 cores, AVX2, no bf16 units'."""
        bf16 = f"bf16 via {self.bf16_units}" if self.bf16_units else "no bf16 units"
        return f"{self.name}, {self.cores} cores, {self.vector_units}, {bf16}"


@dataclass(frozen=True)
class Gpu:
    """A GPU the running backend can use."""

    name: str
    compute_capability: tuple[int, int] | None


@dataclass(frozen=True)
class Choice:
    """A resolved precision and, for the run's first line and ``nstyle info``, why."""

    name: str  # float32, bfloat16 or float16
    reason: str
    notice: str = ""  # a one-line warning, e.g. bf16 emulated on this CPU


def read_cpu(cpuinfo: str | None = None) -> Cpu:
    """Name, feature flags and usable cores, from ``/proc/cpuinfo`` where there is one."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    name, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return Cpu(name or platform.processor() or platform.machine(), frozenset(flags), usable_cores())


@lru_cache(maxsize=1)
def host_cpu() -> Cpu:
    """The CPU this process runs on (read once)."""
    return read_cpu()


@lru_cache(maxsize=1)
def gpus() -> tuple[Gpu, ...]:
    """GPUs the running backend sees, with their compute capability where it reports one."""
    from ..backends import ops

    return tuple(Gpu(name, capability) for name, capability in ops().gpu_list())


def choose(requested: str, cpu: Cpu, gpu_list: tuple[Gpu, ...] = (), optimizer: str = "adam") -> Choice:
    """The precision to run in for ``requested`` (auto, float32, bfloat16, float16) with ``optimizer``, and why."""
    choice = _choose(requested, cpu, gpu_list)
    if requested == "auto" and optimizer == "lbfgs" and choice.name != "float32":
        return Choice("float32", f"auto: L-BFGS keeps float32, which its line search needs ({choice.name} with Adam)")
    return choice


def _choose(requested: str, cpu: Cpu, gpu_list: tuple[Gpu, ...]) -> Choice:
    if gpu_list:
        gpu = gpu_list[0]
        cc = gpu.compute_capability or (0, 0)
        if requested == "auto":
            if cc >= (8, 0):
                return Choice("bfloat16", f"auto: {gpu.name} (compute {cc[0]}.{cc[1]}) has bf16 tensor cores")
            if cc >= (7, 0):
                return Choice("float16", f"auto: {gpu.name} (compute {cc[0]}.{cc[1]}) has float16 tensor cores")
            return Choice("float32", f"auto: {gpu.name} has no low-precision tensor cores")
        return Choice(requested, "asked for")
    if requested == "auto":
        if cpu.bf16_units:
            return Choice("bfloat16", f"auto: the CPU has bf16 matrix units ({cpu.bf16_units})")
        return Choice("float32", "auto: the CPU has no bf16 units (AMX or AVX512-BF16), where bfloat16 is emulated")
    if requested == "bfloat16" and not cpu.bf16_units:
        return Choice("bfloat16", "asked for", "this CPU has no bf16 units: bfloat16 is emulated, slower than float32")
    if requested == "float16":
        return Choice("float16", "asked for", "float16 on a CPU is emulated, slower than float32")
    return Choice(requested, "asked for")


def resolve(requested: str, optimizer: str = "adam") -> Choice:
    """:func:`choose` for this machine's CPU and GPUs."""
    return choose(requested, host_cpu(), gpus(), optimizer)


def device_line(choice: Choice, threads: int) -> str:
    """The run's first line: where it runs, in what precision, on how many threads."""
    found = gpus()
    where = f"GPU {found[0].name}" if found else f"CPU {host_cpu().describe()}"
    return f"device: {where}; precision: {choice.name} ({choice.reason}); threads: {threads}"
