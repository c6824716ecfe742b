"""What this machine offers a job: CPU model and cores, memory, GPUs, and a measured capacity for
``register_worker`` (a short matmul benchmark, in TFLOP/s, reported in integer GFLOP/s for the ledger)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from compute.models._torch import torch_available


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device."""

    name: str
    memory_mb: int


@dataclass(frozen=True)
class DeviceInfo:
    """A worker's hardware, and its measured float32 matmul throughput (the best device)."""

    cpu_model: str
    cpu_cores: int
    memory_mb: int
    gpus: list[GpuInfo] = field(default_factory=list)
    cpu_gflops: int = 0
    gpu_gflops: int = 0

    @property
    def capacity_tflops(self) -> float:
        return max(self.cpu_gflops, self.gpu_gflops) / 1000.0

    @property
    def device_class(self) -> str:
        """``gpu`` when a CUDA device is present, else ``any`` (matches :class:`compute.spec.Requirements`)."""
        return "gpu" if self.gpus else "any"

    def to_dict(self) -> dict[str, object]:
        """Plain ints and strings, ready for a transaction body."""
        out = asdict(self)
        out["capacity_gflops"] = max(self.cpu_gflops, self.gpu_gflops)
        return out


def cpu_model(default: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo; else ``default``, or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if default is not None:
        return default
    return platform.processor() or platform.machine() or "unknown"


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return 0


def _gpus() -> list[GpuInfo]:
    if not torch_available():
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        GpuInfo(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory // (1 << 20))
        for i in range(torch.cuda.device_count())
    ]


def measure_cpu_gflops(seconds: float = 0.3, n: int = 512) -> int:
    """Float32 matmul throughput with NumPy on all the process's threads, best of repeated runs."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pools start
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return int(2 * n**3 / best / 1e9)


def measure_gpu_gflops(seconds: float = 0.3, n: int = 4096) -> int:
    """Float32 matmul throughput on the first CUDA device, or 0 without one."""
    if not _gpus():
        return 0
    import torch

    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    torch.cuda.synchronize()
    a @ b
    torch.cuda.synchronize()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    torch.cuda.synchronize()
    return int(2 * n**3 * runs / (time.perf_counter() - start) / 1e9)


def detect_device(benchmark_s: float = 0.3) -> DeviceInfo:
    """Inspect this machine and measure its capacity (about ``benchmark_s`` per device)."""
    gpus = _gpus()
    return DeviceInfo(
        cpu_model=cpu_model(),
        cpu_cores=_cpu_cores(),
        memory_mb=_memory_mb(),
        gpus=gpus,
        cpu_gflops=measure_cpu_gflops(benchmark_s),
        gpu_gflops=measure_gpu_gflops(benchmark_s) if gpus else 0,
    )
