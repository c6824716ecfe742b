"""Run a job spec on a dataset with a chosen backend and a pinned thread count, returning a canonical result."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from compute.binding import summary_values
from compute.canonical import JobResult, blake2b256, encode_artifact, quantise
from compute.dataset import Dataset
from compute.errors import BackendUnavailable, DatasetError, ExecutionError, ResultError, SpecError
from compute.models import BACKENDS, get_model
from compute.models._torch import cuda_available, torch_available
from compute.models.logistic import classes_of
from compute.spec import JobSpec

_DEFAULT_BACKEND = {
    "linear_regression": "numpy",
    "kmeans": "sklearn",
    "pca": "numpy",
    "logistic_regression": "sklearn",
    "mlp_train": "torch-cpu",
}


def available_backends() -> tuple[str, ...]:
    """Backends usable in this process: NumPy and scikit-learn always, PyTorch CPU/CUDA when present."""
    out = ["numpy", "sklearn"]
    if torch_available():
        out.append("torch-cpu")
        if cuda_available():
            out.append("torch-cuda")
    return tuple(out)


def backends_for(model: str) -> tuple[str, ...]:
    """Backends that offer ``model`` (whether or not they are installed here)."""
    return get_model(model).backends


def default_backend(spec: JobSpec) -> str:
    """The backend a worker uses for ``spec`` when none is named: CUDA for GPU jobs, else a fast CPU path."""
    if spec.requirements.device == "gpu":
        return "torch-cuda"
    return _DEFAULT_BACKEND[spec.model]


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Limit BLAS/OpenMP pools (and PyTorch's intra-op pool, if loaded) to ``threads`` for the block."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise SpecError("threads", f"must be an integer in [1, 1024], got {threads!r}")
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def execute(spec: JobSpec, dataset: Dataset, backend: str | None = None, threads: int = 1) -> JobResult:
    """Fit ``spec`` on ``dataset`` and return the quantised summary, the artifact and its digest."""
    if dataset.digest != spec.dataset_digest:
        raise DatasetError(
            f"dataset {dataset.digest.hex()[:16]}… is not the spec's {spec.dataset_digest.hex()[:16]}…",
            "not_the_spec_dataset",
        )
    model = get_model(spec.model)
    backend = default_backend(spec) if backend is None else backend
    if backend not in BACKENDS:
        raise BackendUnavailable(str(backend), f"unknown backend; known: {BACKENDS}")
    if backend not in model.backends:
        raise BackendUnavailable(backend, f"{spec.model} runs on {model.backends}")
    if spec.requirements.device == "gpu" and backend != "torch-cuda":
        raise BackendUnavailable(backend, "the spec requires a GPU")
    if model.target == "real" and dataset.y is None:
        raise DatasetError(f"{spec.model} needs a target column y", "target_missing")
    if model.target == "labels":
        classes_of(dataset.y)
    start = time.perf_counter()
    with pinned_threads(threads):
        fields = model.fit(backend, dataset.X, dataset.y, spec.params)
    values, display = summary_values(spec.model, spec.digest, dataset.digest, fields)
    try:
        summary = quantise(values, spec.precision)
    except ResultError as exc:
        # Our own job failed to produce a result (the same failure an honest peer meets on the same job).
        raise ExecutionError(exc.reason, exc.kind) from exc
    artifact = encode_artifact(spec.model, spec.digest, dataset.digest, fields)
    return JobResult(
        model=spec.model,
        spec_digest=spec.digest,
        dataset_digest=dataset.digest,
        summary=summary,
        precision=spec.precision,
        artifact=artifact,
        artifact_digest=blake2b256(artifact),
        display=display,
        backend=backend,
        threads=threads,
        elapsed_s=time.perf_counter() - start,
    )
