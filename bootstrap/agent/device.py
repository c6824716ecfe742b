"""What this node's worker can run, without paying for it at start-up.

``compute.device.detect_device`` imports PyTorch and runs matmul benchmarks (seconds); the agent only needs to
know, cheaply and at once, which models and device classes it can take. ``probe_device`` answers that from what
is installed (``importlib.util.find_spec``, never an import) and the CUDA device files, and ``measure_device`` runs
the full detection when a caller wants the measured capacity (worker registration).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from compute.device import cpu_model
from compute.spec import MODELS

# Backends each model runs on (mirrors compute.executor's table; checked by the tests against compute itself).
_TORCH_ONLY = frozenset({"mlp_train"})


@dataclass(frozen=True)
class LocalDevice:
    """The worker side of a job's requirements: device class, memory, and the models this process can run."""

    device_kind: str  # "cpu" or "gpu", as the ledger's RegisterWorker spells it
    device_name: str
    memory_mb: int
    capacity: int  # measured GFLOP/s (0 when not measured)
    models: frozenset[str]

    def problem(self, model: str, device: str, min_memory_mb: int) -> str | None:
        """Why this machine cannot run a job with these requirements, or ``None`` if it can."""
        if model not in self.models:
            return f"model {model!r} is not runnable here (runs: {', '.join(sorted(self.models))})"
        if device == "gpu" and self.device_kind != "gpu":
            return "job needs a gpu"
        if self.memory_mb and min_memory_mb > self.memory_mb:
            return f"job needs {min_memory_mb} MB, this machine has {self.memory_mb} MB"
        return None

    def to_dict(self) -> dict[str, object]:
        return {"device_kind": self.device_kind, "device_name": self.device_name, "memory_mb": self.memory_mb,
                "capacity": self.capacity, "models": sorted(self.models)}


def _memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError, AttributeError):
        return 0


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def probe_device() -> LocalDevice:
    """A quick look (no imports, no benchmark): CPU name, memory, models, and a GPU when CUDA device files exist."""
    torch_ok = torch_installed()
    models = frozenset(m for m in MODELS if torch_ok or m not in _TORCH_ONLY)
    gpu = torch_ok and Path("/dev/nvidiactl").exists()
    return LocalDevice("gpu" if gpu else "cpu", "cuda" if gpu else cpu_model(default="cpu"), _memory_mb(), 0, models)


def measure_device(benchmark_s: float = 0.3) -> LocalDevice:
    """The full detection from ``compute.device`` (imports torch if present, runs a short benchmark)."""
    from compute.device import detect_device

    info = detect_device(benchmark_s)
    base = probe_device()
    gpu = bool(info.gpus)
    name = info.gpus[0].name if gpu else info.cpu_model
    memory = info.gpus[0].memory_mb if gpu else info.memory_mb
    return LocalDevice("gpu" if gpu else "cpu", name[:128], memory, max(info.cpu_gflops, info.gpu_gflops),
                       base.models)
