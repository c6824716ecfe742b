"""The compute package's errors: one root, and typed children that carry the offending field or reason.

Two honest workers that hit the same deterministic failure (a bad spec field, unusable labels, a summary that
overflows at the spec's precision) must be able to report the same thing on the ledger: :func:`error_code`
maps each such failure to a small stable integer. The table (codes are never reused or renumbered; a new
field or kind gets a new code):

==========  ==============================================================================================
code        failure
==========  ==============================================================================================
100         SpecError, a field not listed below
101-112     SpecError on ``spec``, ``model``, ``params`` (structure, or an unknown parameter name),
            ``dataset_digest``, ``precision``, ``tolerance.abs``, ``tolerance.ppm``, ``requirements.device``,
            ``requirements.min_memory_mb``, ``limits.time_limit_ms``, ``limits.memory_limit_mb``, ``threads``
120-137     SpecError on a model parameter: ``params.alpha``, ``fit_intercept``, ``k``, ``iterations``,
            ``seed``, ``init``, ``n_components``, ``whiten``, ``C``, ``max_iter``, ``hidden``,
            ``activation``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``test_fraction``, ``n_init``
200         DatasetError, any other kind (loading, size, encoding)
201-206     DatasetError kinds ``target_missing``, ``labels_not_integer``, ``too_few_classes``,
            ``nothing_to_train``, ``not_the_spec_dataset``, ``magnitude``
300         ExecutionError, any other kind
301-306     ExecutionError kinds ``non_finite_summary``, ``overflow_at_precision``, ``summary_too_long``,
            (304 reserved), ``diverged``, ``not_converged``
400         ResultError, any other kind (a malformed result or artifact from elsewhere)
401-403     ResultError kinds ``non_finite_summary``, ``overflow_at_precision``, ``summary_too_long``
500         BackendUnavailable (depends on the machine, not the job: never a job's outcome)
600         PoolError (the worker pool, not the job)
900         any other ComputeError
==========  ==============================================================================================
"""


class ComputeError(Exception):
    """Root of every error raised by ``compute``."""


class SpecError(ComputeError):
    """A job spec (or one of its parameters) is invalid; ``field`` names it, e.g. ``params.k``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DatasetError(ComputeError):
    """Data that cannot be used: NaN, wrong shape or dtype, too large, bad encoding or digest. ``kind`` names a
    failure that a job on valid data can hit deterministically (see the code table); empty otherwise."""

    def __init__(self, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class BackendUnavailable(ComputeError):
    """The requested backend cannot run here (PyTorch missing, no CUDA, model not offered on it)."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


class ExecutionError(ComputeError):
    """A job started but could not produce a result (numerical failure, result too large); ``kind`` names a
    deterministic failure from the code table, empty for any other."""

    def __init__(self, reason: str = "", kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class ResultError(ComputeError):
    """A result or artifact is malformed: bad encoding, digest mismatch, non-finite values; ``kind`` as for
    :class:`ExecutionError` when quantising a summary fails."""

    def __init__(self, reason: str = "", kind: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class PoolError(ComputeError):
    """The worker pool itself failed (not a job): a bad frame from a child, a pool used after close."""


_SPEC_FIELDS = {
    "spec": 101, "model": 102, "params": 103, "dataset_digest": 104, "precision": 105, "tolerance.abs": 106,
    "tolerance.ppm": 107, "requirements.device": 108, "requirements.min_memory_mb": 109,
    "limits.time_limit_ms": 110, "limits.memory_limit_mb": 111, "threads": 112,
    "params.alpha": 120, "params.fit_intercept": 121, "params.k": 122, "params.iterations": 123,
    "params.seed": 124, "params.init": 125, "params.n_components": 126, "params.whiten": 127, "params.C": 128,
    "params.max_iter": 129, "params.hidden": 130, "params.activation": 131, "params.epochs": 132,
    "params.batch_size": 133, "params.lr": 134, "params.weight_decay": 135, "params.test_fraction": 136,
    "params.n_init": 137,
}
_DATASET_KINDS = {"target_missing": 201, "labels_not_integer": 202, "too_few_classes": 203,
                  "nothing_to_train": 204, "not_the_spec_dataset": 205, "magnitude": 206}
_EXECUTION_KINDS = {"non_finite_summary": 301, "overflow_at_precision": 302, "summary_too_long": 303,
                    "diverged": 305, "not_converged": 306}
_RESULT_KINDS = {"non_finite_summary": 401, "overflow_at_precision": 402, "summary_too_long": 403}


def error_code(exc: ComputeError) -> int:
    """The stable integer for ``exc`` from the table in this module's docstring; never raises."""
    try:
        if isinstance(exc, SpecError):
            field = str(getattr(exc, "field", ""))
            if field in _SPEC_FIELDS:
                return _SPEC_FIELDS[field]
            # An unknown parameter's name is whatever the submitter wrote: one code for all of them.
            return 103 if field.startswith("params.") else 100
        if isinstance(exc, DatasetError):
            return _DATASET_KINDS.get(str(getattr(exc, "kind", "")), 200)
        if isinstance(exc, ExecutionError):
            return _EXECUTION_KINDS.get(str(getattr(exc, "kind", "")), 300)
        if isinstance(exc, ResultError):
            return _RESULT_KINDS.get(str(getattr(exc, "kind", "")), 400)
        if isinstance(exc, BackendUnavailable):
            return 500
        if isinstance(exc, PoolError):
            return 600
    except Exception:  # a subclass with a hostile __eq__ or __str__ still gets a code
        pass
    return 900
