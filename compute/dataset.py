"""Datasets: a float64 feature matrix, an optional target, and the BLAKE2b-256 digest that names them.

Data arrives as NumPy ``.npy`` bytes, CSV, or from a seeded synthetic generator; anything unusable (NaN or inf,
wrong shape, wrong dtype, too large) is refused with a :class:`DatasetError` saying why. Peers move a dataset as
:func:`encode_dataset` bytes; the digest is that encoding's hash, so the receiver re-derives it.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass

import msgpack
import numpy as np

from compute.errors import DatasetError

DATASET_TAG = "dacn-dataset/1"
DIGEST_SIZE = 32


@dataclass(frozen=True)
class DatasetLimits:
    """Size bounds applied to every dataset a node accepts."""

    max_bytes: int = 512 * 1024 * 1024  # float64 payload of X and y together
    max_rows: int = 5_000_000
    max_features: int = 4096
    max_csv_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = DatasetLimits()


@dataclass(frozen=True, eq=False)
class Dataset:
    """Read-only float64 ``X`` (n × d), optional float64 ``y`` (n,), and their digest."""

    X: np.ndarray
    y: np.ndarray | None
    digest: bytes

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.X.nbytes + (0 if self.y is None else self.y.nbytes))


def _as_float64(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "fiu" or array.dtype.fields is not None:
        raise DatasetError(f"{name} has dtype {array.dtype}; expected a real numeric dtype (float or int)")
    out = np.ascontiguousarray(array, dtype="<f8")
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out.ravel()))[0])
        raise DatasetError(f"{name} contains NaN or infinity (first at flat index {bad})")
    return out


def make_dataset(X: np.ndarray, y: np.ndarray | None = None, limits: DatasetLimits = DEFAULT_LIMITS) -> Dataset:
    """Validate arrays into a :class:`Dataset` (copies to read-only little-endian float64, computes the digest)."""
    Xf, yf = _validate(X, y, limits)
    return Dataset(Xf, yf, _digest(Xf, yf))


def _validate(X: np.ndarray, y: np.ndarray | None, limits: DatasetLimits) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X)
    if X.ndim != 2:
        raise DatasetError(f"X must be 2-D (samples × features), got shape {X.shape}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise DatasetError(f"X must have at least one row and one column, got shape {X.shape}")
    if n > limits.max_rows:
        raise DatasetError(f"X has {n} rows; the limit is {limits.max_rows}")
    if d > limits.max_features:
        raise DatasetError(f"X has {d} features; the limit is {limits.max_features}")
    size = 8 * n * (d + (0 if y is None else 1))
    if size > limits.max_bytes:
        raise DatasetError(f"dataset needs {size} bytes as float64; the limit is {limits.max_bytes}")
    Xf = _as_float64("X", X)
    yf = None
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise DatasetError(f"y must be 1-D with {n} entries to match X, got shape {y.shape}")
        yf = _as_float64("y", y)
        yf.setflags(write=False)
    Xf.setflags(write=False)
    return Xf, yf


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _pieces(X: np.ndarray, y: np.ndarray | None) -> list[bytes | memoryview]:
    # The MessagePack encoding of [tag, [n, d], X bytes, y bytes | nil], built in pieces so that hashing a
    # large dataset never copies it.
    head = msgpack.packb([DATASET_TAG, [int(X.shape[0]), int(X.shape[1])]], use_bin_type=True)
    out: list[bytes | memoryview] = [b"\x94" + head[1:], _bin_header(X.nbytes), memoryview(X).cast("B")]
    if y is None:
        out.append(b"\xc0")
    else:
        out += [_bin_header(y.nbytes), memoryview(y).cast("B")]
    return out


def _digest(X: np.ndarray, y: np.ndarray | None) -> bytes:
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for piece in _pieces(X, y):
        h.update(piece)
    return h.digest()


def encode_dataset(ds: Dataset) -> bytes:
    """The canonical bytes a peer sends; their BLAKE2b-256 is ``ds.digest``."""
    return b"".join(_pieces(ds.X, ds.y))


def decode_dataset(
    data: bytes, expected_digest: bytes | None = None, limits: DatasetLimits = DEFAULT_LIMITS
) -> Dataset:
    """Parse bytes from a peer, checking size, shape, values and (when given) the digest they were named by."""
    if len(data) > limits.max_bytes + 1024:
        raise DatasetError(f"encoded dataset is {len(data)} bytes; the limit is {limits.max_bytes}")
    actual = hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()
    if expected_digest is not None and actual != expected_digest:
        raise DatasetError(f"digest mismatch: expected {expected_digest.hex()}, got {actual.hex()}")
    try:
        wire = msgpack.unpackb(data, raw=False)
    except MemoryError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DatasetError(f"not a valid dataset encoding: {exc}") from exc
    if not (isinstance(wire, list) and len(wire) == 4 and wire[0] == DATASET_TAG):
        raise DatasetError(f"expected a 4-item list tagged {DATASET_TAG!r}")
    _, shape, xb, yb = wire
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise DatasetError(f"bad shape {shape!r}")
    n, d = shape
    if not isinstance(xb, bytes) or len(xb) != 8 * n * d:
        raise DatasetError(f"X payload must be {8 * n * d} bytes for shape {shape}")
    if yb is not None and (not isinstance(yb, bytes) or len(yb) != 8 * n):
        raise DatasetError(f"y payload must be {8 * n} bytes for {n} rows")
    X = np.frombuffer(xb, dtype="<f8").reshape(n, d)
    y = None if yb is None else np.frombuffer(yb, dtype="<f8")
    # A non-canonical MessagePack encoding (wider integer or length headers) is strictly longer.
    if len(data) != sum(len(p) for p in _pieces(X, y)):
        raise DatasetError("encoding is not canonical")
    Xf, yf = _validate(X, y, limits)
    return Dataset(Xf, yf, actual)


def dataset_from_npy(
    x_bytes: bytes, y_bytes: bytes | None = None, limits: DatasetLimits = DEFAULT_LIMITS
) -> Dataset:
    """A dataset from ``.npy`` bytes (``np.save`` output) for X and optionally y; pickled objects are refused."""
    X = load_npy("X", x_bytes, limits)
    y = None if y_bytes is None else load_npy("y", y_bytes, limits)
    return make_dataset(X, y, limits)


def load_npy(name: str, blob: bytes, limits: DatasetLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The array in ``.npy`` bytes, unchecked beyond its size (a typed error names ``name`` if it is not one;
    pickled objects are refused)."""
    if len(blob) > limits.max_bytes + 1024:
        raise DatasetError(f"{name} .npy is {len(blob)} bytes; the limit is {limits.max_bytes}")
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"{name} is not a plain .npy array: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # truncated or garbled headers raise assorted errors
        raise DatasetError(f"{name} is not valid .npy data: {exc}") from exc


def dataset_from_csv(
    data: bytes,
    target_column: int | str | None = None,
    limits: DatasetLimits = DEFAULT_LIMITS,
) -> Dataset:
    """A dataset from CSV text; a first row with any non-numeric cell is a header; ``target_column`` → y."""
    if len(data) > limits.max_csv_bytes:
        raise DatasetError(f"CSV is {len(data)} bytes; the limit is {limits.max_csv_bytes}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"CSV is not UTF-8: {exc}") from exc
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    except csv.Error as exc:  # a bare carriage return inside a field, a NUL byte, …
        raise DatasetError(f"CSV does not parse: {exc}") from None
    if not rows:
        raise DatasetError("CSV has no rows")
    header: list[str] | None = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DatasetError("CSV has a header but no data rows")
    width = len(rows[0]) if header is None else len(header)
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DatasetError(f"CSV row {i + 1} has {len(row)} cells; expected {width}")
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DatasetError(f"CSV row {i + 1}, column {j + 1}: {cell!r} is not a number") from None
    if target_column is None:
        return make_dataset(values, None, limits)
    if isinstance(target_column, str):
        if header is None or target_column not in header:
            raise DatasetError(f"target column {target_column!r} not found in header {header}")
        target_column = header.index(target_column)
    return split_target(values, target_column, limits)


def split_target(values: np.ndarray, target_column: int, limits: DatasetLimits = DEFAULT_LIMITS) -> Dataset:
    """A dataset from a 2-D table whose column ``target_column`` (an index, negative from the end) becomes y and
    the rest X (CSV and ``.npy`` uploads both name their target this way)."""
    if values.ndim != 2:
        raise DatasetError(f"a table with a target column must be 2-D, got shape {values.shape}")
    width = values.shape[1]
    if isinstance(target_column, bool) or not isinstance(target_column, int) or not -width <= target_column < width:
        raise DatasetError(f"target column {target_column!r} out of range for {width} columns")
    if width < 2:
        raise DatasetError("a dataset needs at least one feature column besides the target")
    col = target_column % width
    return make_dataset(np.delete(values, col, axis=1), np.ascontiguousarray(values[:, col]), limits)


SYNTHETIC_KINDS = ("regression", "blobs", "classification")


def synthetic(
    kind: str,
    n_samples: int,
    n_features: int,
    seed: int,
    *,
    n_classes: int = 3,
    noise: float = 0.1,
    limits: DatasetLimits = DEFAULT_LIMITS,
) -> Dataset:
    """A seeded dataset, bit-identical on every machine: ``regression`` (y real), ``blobs`` and
    ``classification`` (y integer labels in ``[0, n_classes)``).

    Only element-wise operations follow the generator, never BLAS reductions, whose last bits depend on the
    thread count and would change the digest from machine to machine.
    """
    if kind not in SYNTHETIC_KINDS:
        raise DatasetError(f"unknown synthetic kind {kind!r}; known: {SYNTHETIC_KINDS}")
    if not (1 <= n_samples <= limits.max_rows and 1 <= n_features <= limits.max_features):
        raise DatasetError(f"shape {n_samples}×{n_features} outside limits")
    if not 2 <= n_classes <= 1000:
        raise DatasetError(f"n_classes must be in [2, 1000], got {n_classes}")
    rng = np.random.default_rng(seed)
    if kind == "regression":
        X = rng.standard_normal((n_samples, n_features), dtype=np.float64)
        w = rng.uniform(-2.0, 2.0, n_features)
        y = np.full(n_samples, rng.uniform(-1.0, 1.0))
        for j in range(n_features):
            y = y + X[:, j] * w[j]
        y = y + noise * rng.standard_normal(n_samples, dtype=np.float64)
    elif kind == "blobs":
        centres = rng.uniform(-10.0, 10.0, (n_classes, n_features))
        labels = rng.integers(0, n_classes, n_samples, dtype=np.int64)
        X = centres[labels] + rng.standard_normal((n_samples, n_features), dtype=np.float64)
        y = labels.astype(np.float64)
    else:
        X = rng.standard_normal((n_samples, n_features), dtype=np.float64)
        w = rng.standard_normal((n_classes, n_features))
        logits = np.zeros((n_samples, n_classes))
        for j in range(n_features):
            logits = logits + X[:, j : j + 1] * w[:, j]
        logits = logits + rng.gumbel(0.0, 1.0 + noise, (n_samples, n_classes))
        y = np.argmax(logits, axis=1).astype(np.float64)
    return make_dataset(X, y, limits)
