"""Lazy PyTorch access: compute imports and runs without torch; torch paths call :func:`torch_for`."""

from __future__ import annotations

import os
from typing import Any

from compute.errors import BackendUnavailable


def torch_available() -> bool:
    """Whether PyTorch can be imported here (imports it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    """Whether a CUDA device is usable (imports torch)."""
    return torch_available() and _cuda()


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def torch_for(backend: str) -> tuple[Any, Any]:
    """``(torch, device)`` for ``torch-cpu`` or ``torch-cuda``, or :class:`BackendUnavailable` with the reason."""
    # cuBLAS needs this before CUDA initialises for deterministic matmuls under use_deterministic_algorithms.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(backend, "PyTorch is not installed (pip install 'dacn[torch]')") from exc
    if backend == "torch-cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable(backend, "torch.cuda.is_available() is false on this machine")
        return torch, torch.device("cuda")
    return torch, torch.device("cpu")


def as_tensor(torch: Any, array: Any, device: Any) -> Any:
    """A float64/int tensor on ``device`` viewing (on CPU) or copying a NumPy array; read-only arrays are fine
    because no job writes into its input."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)
