"""The API's one error shape, ``{"error": "<what was wrong>", "detail": ...}``, and the map from every typed error
of the node and the libraries to its HTTP status (400 bad input, 404 unknown, 409 conflict, 413 too large, 429
busy; anything untyped is a bug and a JSON 500)."""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError

from bootstrap.errors import (
    BlobNotFound,
    BlobTooLarge,
    HeightNotKept,
    NodeBusy,
    NodeError,
    NodeNotRunning,
    UnknownAccount,
)
from bootstrap.home import KeystoreError, WrongPassphrase
from compute.errors import BackendUnavailable, ComputeError, DatasetError, SpecError
from ledger.errors import (
    AlreadyRegistered,
    DeadlinePassed,
    DecodeError,
    DuplicateAction,
    EncodeError,
    InsufficientFunds,
    InvalidField,
    InvalidTx,
    LedgerError,
    UnknownJob,
    UnknownWorker,
    WrongJobState,
)
from ledger.mempool import AlreadyInMempool, FutureQueueFull, MempoolError, MempoolFull, TxTooLarge

RETRY_AFTER_S = 1  # what a client told the mempool is full should wait before sending the same tx again


class ApiError(Exception):
    """An error the API reports as ``{"error": message, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}



def parse_hex32(text: str, field: str) -> bytes:
    """32 bytes from 64 hex characters, or a 400 naming ``field``."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"{field}: not valid hex", {"field": field, "value": text}) from None
    if len(raw) != 32:
        raise ApiError(400, f"{field}: expected 32 bytes (64 hex characters), got {len(raw)}",
                       {"field": field, "value": text})
    return raw


def error_for(exc: BaseException) -> ApiError:
    """Map a typed error from the node or the libraries to the API's status and shape."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InsufficientFunds):
        return ApiError(400, str(exc), {"kind": "insufficient_funds", "needed": exc.needed,
                                        "available": exc.available, "shortfall": exc.needed - exc.available})
    if isinstance(exc, UnknownJob | UnknownWorker | UnknownAccount | HeightNotKept):
        return ApiError(404, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, AlreadyRegistered | DuplicateAction | AlreadyInMempool | WrongJobState | DeadlinePassed):
        return ApiError(409, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, DecodeError | InvalidField | EncodeError):
        # Some refusals say how to fix them (the commit window a run needs, and its fee): keep that in the detail.
        return ApiError(400, str(exc), {"kind": type(exc).__name__, "field": getattr(exc, "field", None)
                                        or getattr(exc, "path", None), **getattr(exc, "detail", {})})
    if isinstance(exc, MempoolFull | FutureQueueFull):
        # Back-pressure, not a verdict on the tx: the same bytes may be sent again once there is room.
        kind = "mempool_full" if isinstance(exc, MempoolFull) else "future_queue_full"
        return ApiError(429, str(exc), {"kind": kind, "retry_after_s": RETRY_AFTER_S},
                        {"retry-after": str(RETRY_AFTER_S)})
    if isinstance(exc, TxTooLarge):
        return ApiError(413, str(exc), {"kind": "tx_too_large", "size": exc.size, "limit": exc.limit})
    if isinstance(exc, InvalidTx | MempoolError | LedgerError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, SpecError):
        return ApiError(400, str(exc), {"kind": "spec", "field": exc.field})
    if isinstance(exc, DatasetError):
        return ApiError(400, f"dataset: {exc.reason}", {"kind": "dataset", "field": "dataset"})
    if isinstance(exc, BackendUnavailable):
        return ApiError(400, str(exc), {"kind": "backend", "field": "device"})
    if isinstance(exc, ComputeError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    if isinstance(exc, WrongPassphrase):
        return ApiError(403, str(exc), {"kind": "wrong_passphrase"})
    if isinstance(exc, KeystoreError):
        return ApiError(400, str(exc), {"kind": "keystore"})
    if isinstance(exc, BlobNotFound):
        return ApiError(404, str(exc), {"kind": "blob_not_found"})
    if isinstance(exc, BlobTooLarge):
        return ApiError(413, str(exc), {"kind": "blob_too_large"})
    if isinstance(exc, NodeBusy):
        # Back-pressure too: admission has had its share of the node's loop; the same bytes may come again.
        return ApiError(429, str(exc), {"kind": "node_busy", "retry_after_s": exc.retry_after_s},
                        {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))})
    if isinstance(exc, NodeNotRunning):
        return ApiError(409, str(exc), {"kind": "node_not_running"})
    if isinstance(exc, NodeError | ValueError):
        return ApiError(400, str(exc), {"kind": type(exc).__name__})
    return ApiError(500, "internal error", {"kind": type(exc).__name__})


MAX_PROBLEMS = 20
"""Validation problems listed in one answer: a body of 100,000 unknown keys once became a 250 MiB error."""


def validation_error(exc: RequestValidationError) -> ApiError:
    """A 400 naming each field that failed (the first :data:`MAX_PROBLEMS`, and how many there were)."""
    problems = []
    errors = exc.errors()
    for err in errors[:MAX_PROBLEMS]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        # pydantic prefixes messages from our validators with "Value error, "; drop the noise.
        msg = msg.removeprefix("Value error, ")
        problems.append({"field": field, "message": msg})
    summary = "; ".join(f"{p['field']}: {p['message']:.200}" for p in problems) or "invalid request"
    if len(errors) > MAX_PROBLEMS:
        summary += f"; and {len(errors) - MAX_PROBLEMS} more problems"
    return ApiError(400, summary, problems)
