"""The compute package's errors: one root, and typed children that carry the offending field or reason."""


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
