"""Machine-learning jobs that a second peer can re-run and compare: specs, datasets, executors, canonical results.

The public surface, for the node and the worker agent:

* :func:`make_spec` / :class:`JobSpec` — validated job specs with a stable digest;
* :func:`synthetic`, :func:`dataset_from_npy`, :func:`dataset_from_csv`, :func:`encode_dataset` /
  :func:`decode_dataset` — datasets by digest;
* :func:`execute` — run a spec in this process; :class:`compute.pool.WorkerPool` (blocking) or
  ``bootstrap.agent.pool`` (trio) run it in sandboxed worker processes;
* :class:`JobResult` — ``summary`` (ints), ``precision``, ``artifact``, ``artifact_digest``, ``display``;
* :func:`check_certificate` — cheap verification of a claimed result;
* :func:`detect_device` — hardware and measured capacity for ``register_worker``.

PyTorch is optional: everything but ``mlp_train`` and the ``torch-*`` backends works without it.
"""

from compute.canonical import JobResult, decode_artifact, dequantise, quantise
from compute.certificates import CertificateReport, check_certificate
from compute.dataset import (
    Dataset,
    DatasetLimits,
    dataset_from_csv,
    dataset_from_npy,
    decode_dataset,
    encode_dataset,
    make_dataset,
    synthetic,
)
from compute.device import DeviceInfo, detect_device
from compute.errors import (
    BackendUnavailable,
    ComputeError,
    DatasetError,
    ExecutionError,
    PoolError,
    ResultError,
    SpecError,
)
from compute.executor import available_backends, default_backend, execute
from compute.spec import MODELS, JobSpec, Limits, Requirements, Tolerance, make_spec

__all__ = [
    "MODELS",
    "BackendUnavailable",
    "CertificateReport",
    "ComputeError",
    "Dataset",
    "DatasetError",
    "DatasetLimits",
    "DeviceInfo",
    "ExecutionError",
    "JobResult",
    "JobSpec",
    "Limits",
    "PoolError",
    "Requirements",
    "ResultError",
    "SpecError",
    "Tolerance",
    "available_backends",
    "check_certificate",
    "dataset_from_csv",
    "dataset_from_npy",
    "decode_artifact",
    "decode_dataset",
    "default_backend",
    "dequantise",
    "detect_device",
    "encode_dataset",
    "execute",
    "make_dataset",
    "make_spec",
    "quantise",
    "synthetic",
]
