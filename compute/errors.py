"""The compute package's errors: one root, typed children that carry the offending field or reason, and the
stable code a worker claims when a spec fails deterministically (:func:`error_code`)."""

import zlib


class ComputeError(Exception):
    """Root of every error raised by ``compute``."""


class SpecError(ComputeError):
    """A job spec (or one of its parameters) is invalid; ``field`` names it, e.g. ``params.k``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DatasetError(ComputeError):
    """Data that cannot be used: NaN, wrong shape or dtype, too large, bad encoding or digest."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(ComputeError):
    """The requested backend cannot run here (PyTorch missing, no CUDA, model not offered on it)."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: {reason}")
        self.backend = backend
        self.reason = reason


class ExecutionError(ComputeError):
    """A job started but could not produce a result (numerical failure, result too large)."""


class ResultError(ComputeError):
    """A result or artifact is malformed: bad encoding, digest mismatch, non-finite values."""


class PoolError(ComputeError):
    """The worker pool itself failed (not a job): a bad frame from a child, a pool used after close."""


# A reveal that says "the spec fails on its data" carries this code, and the ledger compares two such claims
# exactly: every honest run of one spec on one dataset must arrive at the same number. Codes are below 1000 (the
# node keeps 1000 and up for its own checks of a spec against its job).
_CLASS_CODES: tuple[tuple[type[ComputeError], int], ...] = (
    (SpecError, 1), (DatasetError, 2), (ResultError, 3), (ExecutionError, 4), (BackendUnavailable, 5),
    (PoolError, 6),
)
_OTHER = 9
_FIELD_BUCKETS = 99


def error_code(exc: BaseException) -> int:
    """A stable small positive code for a compute error: its class times 100 (``SpecError`` 100, ``DatasetError``
    200, ``ResultError`` 300, ``ExecutionError`` 400, ``BackendUnavailable`` 500, ``PoolError`` 600, anything
    else 900), plus for an error naming a field (``SpecError.field``) 1 + crc32(field) mod 99, so runs failing on
    the same parameter agree and runs failing on different ones (most likely) do not."""
    base = next((code for cls, code in _CLASS_CODES if isinstance(exc, cls)), _OTHER) * 100
    field = getattr(exc, "field", None)
    if isinstance(field, str) and field:
        return base + 1 + zlib.crc32(field.encode()) % _FIELD_BUCKETS
    return base
