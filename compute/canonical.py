"""Canonical results: the integer summary the ledger compares, and the artifact whose digest it commits to.

A summary is a short vector of floats quantised as ``round(x * 10**precision)`` (ties to even); the artifact is the
full output (model arrays, labels, curves) in a canonical MessagePack form, bound to the spec and dataset digests
so that a result cannot be replayed for other data or another job.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from compute.errors import ResultError

ARTIFACT_TAG = "dacn-artifact/1"
RESULT_TAG = "dacn-result/1"
MAX_SUMMARY_LEN = 8192
_INT64_LIMIT = 2**63
_ARRAY_DTYPES = ("<f8", "<i4", "<i8")


def blake2b256(data: bytes) -> bytes:
    """BLAKE2b with a 32-byte digest: every content address in compute."""
    return hashlib.blake2b(data, digest_size=32).digest()


def quantise(values: Sequence[float] | np.ndarray, precision: int) -> list[int]:
    """``round(x * 10**precision)`` per value, as Python ints; non-finite or int64-overflowing values raise."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size > MAX_SUMMARY_LEN:
        raise ResultError(f"summary has {arr.size} values; the limit is {MAX_SUMMARY_LEN}", "summary_too_long")
    if not np.isfinite(arr).all():
        raise ResultError("summary contains NaN or infinity", "non_finite_summary")
    scaled = np.rint(arr * (10.0**precision))
    if arr.size and np.abs(scaled).max() >= _INT64_LIMIT:
        raise ResultError(f"a summary value overflows int64 at precision {precision}", "overflow_at_precision")
    return [int(v) for v in scaled.astype(np.int64)]


def dequantise(summary: Sequence[int], precision: int) -> list[float]:
    """The floats a summary stands for (for display and for certificates)."""
    return [v / 10**precision for v in summary]


ArtifactValue = np.ndarray | int | float | str | bool


def encode_artifact(
    model: str, spec_digest: bytes, dataset_digest: bytes, fields: Mapping[str, ArtifactValue]
) -> bytes:
    """Canonical bytes of a full output: arrays as ``[dtype, shape, raw little-endian bytes]``, keys sorted."""
    out: list[list[Any]] = []
    for name in sorted(fields):
        value = fields[name]
        if isinstance(value, np.ndarray):
            dtype = "<f8" if value.dtype.kind == "f" else "<i8" if value.dtype == np.int64 else "<i4"
            arr = np.ascontiguousarray(value, dtype=dtype)
            out.append([name, [dtype, list(arr.shape), arr.tobytes()]])
        elif isinstance(value, bool | int | str):
            out.append([name, value])
        elif isinstance(value, float):
            out.append([name, float(value)])
        else:
            raise ResultError(f"artifact field {name!r} has unsupported type {type(value).__name__}")
    return msgpack.packb([ARTIFACT_TAG, model, spec_digest, dataset_digest, out], use_bin_type=True)


@dataclass(frozen=True)
class Artifact:
    """A decoded artifact: which job and data it belongs to, and its named fields."""

    model: str
    spec_digest: bytes
    dataset_digest: bytes
    fields: dict[str, ArtifactValue]


def decode_artifact(data: bytes) -> Artifact:
    """Parse artifact bytes; a truncated or malformed artifact raises :class:`ResultError`."""
    try:
        wire = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ResultError(f"artifact is not valid MessagePack: {exc}") from exc
    if not (isinstance(wire, list) and len(wire) == 5 and wire[0] == ARTIFACT_TAG):
        raise ResultError(f"artifact must be a 5-item list tagged {ARTIFACT_TAG!r}")
    _, model, spec_digest, dataset_digest, items = wire
    if not (isinstance(model, str) and isinstance(spec_digest, bytes) and isinstance(dataset_digest, bytes)):
        raise ResultError("artifact header has wrong types")
    fields: dict[str, ArtifactValue] = {}
    for item in items if isinstance(items, list) else [None]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ResultError("artifact field must be [name, value]")
        name, value = item
        if isinstance(value, list):
            if not (len(value) == 3 and value[0] in _ARRAY_DTYPES and isinstance(value[1], list)):
                raise ResultError(f"artifact array {name!r} is malformed")
            dtype, shape, raw = value
            if not all(type(n) is int and n >= 0 for n in shape):  # numpy would raise ValueError/TypeError
                raise ResultError(f"artifact array {name!r} has a bad shape {shape!r}")
            # numpy refuses a shape whose nominal size overflows its index type, even with a zero dimension
            if len(shape) > 32 or math.prod(max(n, 1) for n in shape) * np.dtype(dtype).itemsize >= 2**62:
                raise ResultError(f"artifact array {name!r} has a shape numpy cannot hold {shape!r}")
            count = math.prod(shape)  # Python ints: a hostile shape cannot overflow
            if not isinstance(raw, bytes):
                raise ResultError(f"artifact array {name!r} holds {type(raw).__name__}, not bytes")
            if len(raw) != count * np.dtype(dtype).itemsize:
                raise ResultError(f"artifact array {name!r} has {len(raw)} bytes for shape {shape}")
            fields[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        elif isinstance(value, bool | int | float | str):
            fields[name] = value
        else:
            raise ResultError(f"artifact field {name!r} has unsupported type {type(value).__name__}")
    return Artifact(model, spec_digest, dataset_digest, fields)


@dataclass(frozen=True)
class JobResult:
    """What a worker reports: the integer summary and its scale, the artifact and its digest, and floats for
    people to read. ``summary`` and ``artifact_digest`` are what the ledger commits to."""

    model: str
    spec_digest: bytes
    dataset_digest: bytes
    summary: list[int]
    precision: int
    artifact: bytes
    artifact_digest: bytes
    display: dict[str, Any] = field(default_factory=dict)
    backend: str = ""
    threads: int = 1
    elapsed_s: float = 0.0

    def encode(self) -> bytes:
        """Bytes for moving a result between processes or peers."""
        return msgpack.packb(
            [
                RESULT_TAG, self.model, self.spec_digest, self.dataset_digest, self.summary, self.precision,
                self.artifact, self.artifact_digest, self.display, self.backend, self.threads, self.elapsed_s,
            ],
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> JobResult:
        """Parse result bytes; the artifact digest is checked against the artifact."""
        try:
            wire = msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise ResultError(f"result is not valid MessagePack: {exc}") from exc
        if not (isinstance(wire, list) and len(wire) == 12 and wire[0] == RESULT_TAG):
            raise ResultError(f"result must be a 12-item list tagged {RESULT_TAG!r}")
        result = cls(*wire[1:])
        if not isinstance(result.summary, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in result.summary
        ):
            raise ResultError("summary must be a list of integers")
        if blake2b256(result.artifact) != result.artifact_digest:
            raise ResultError("artifact digest does not match the artifact")
        return result
