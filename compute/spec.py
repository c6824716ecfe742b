"""Job specs: a model name, validated parameters, a dataset digest, precision, tolerance, requirements, limits.

A spec has one canonical MessagePack encoding (fixed field order, parameters sorted by name, every default filled
in), so its BLAKE2b-256 digest is stable across machines and can name the job on the ledger. Decoding untrusted
bytes re-validates everything and refuses any encoding that is not the canonical one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from compute.errors import SpecError

SPEC_TAG = "dacn-job/1"
DIGEST_SIZE = 32
MAX_SPEC_BYTES = 16 * 1024
DEVICES = ("any", "gpu")

ParamValue = int | float | bool | str | tuple[int, ...]


@dataclass(frozen=True)
class Tolerance:
    """The agreement tolerance the ledger applies to two summaries: ``abs`` units plus ``ppm`` of magnitude."""

    abs: int
    ppm: int

    def __post_init__(self) -> None:
        for name in ("abs", "ppm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
                raise SpecError(f"tolerance.{name}", f"must be an integer in [0, 1e9], got {value!r}")


@dataclass(frozen=True)
class Requirements:
    """What a worker needs to bid: a device class and a minimum of free memory."""

    device: str = "any"
    min_memory_mb: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise SpecError("requirements.device", f"must be one of {DEVICES}, got {self.device!r}")
        _check_int("requirements.min_memory_mb", self.min_memory_mb, 0, 1 << 24)


@dataclass(frozen=True)
class Limits:
    """Per-job limits enforced by the worker pool: wall time (parent kills the child) and address space."""

    time_limit_ms: int = 600_000
    memory_limit_mb: int = 4096

    def __post_init__(self) -> None:
        _check_int("limits.time_limit_ms", self.time_limit_ms, 1, 86_400_000)
        _check_int("limits.memory_limit_mb", self.memory_limit_mb, 1, 1 << 24)


@dataclass(frozen=True)
class Param:
    """One model parameter: its kind, default, and a check returning a reason when the value is bad."""

    name: str
    kind: str  # "int", "float", "bool", "str", "int_list"
    default: ParamValue
    check: Callable[[Any], str | None] = lambda _value: None


def _between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be in [{lo}, {hi}], got {v!r}"


def _choice(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {options}, got {v!r}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


def _layers(v: tuple[int, ...]) -> str | None:
    if not 1 <= len(v) <= 8:
        return f"must list 1 to 8 layer widths, got {len(v)}"
    if any(not 1 <= w <= 4096 for w in v):
        return f"every width must be in [1, 4096], got {list(v)}"
    return None


_SEED = Param("seed", "int", 0, _between(0, 2**63 - 1))

MODEL_PARAMS: dict[str, tuple[Param, ...]] = {
    "linear_regression": (
        Param("alpha", "float", 0.0, _between(0.0, 1e12)),  # 0 is OLS, > 0 is ridge
        Param("fit_intercept", "bool", True),
    ),
    "kmeans": (
        Param("k", "int", 8, _between(1, 1024)),
        Param("iterations", "int", 300, _between(1, 10_000)),
        _SEED,
        Param("init", "str", "k-means++", _choice("k-means++", "random")),
        # Starts tried, the best kept. 10 was scikit-learn's default until 1.4 (now "auto", one k-means++ start):
        # one start lands in a worse local optimum for some seeds on its own shipped datasets, ten match or beat
        # scikit-learn's default on all of them, for ten times the Lloyd work.
        Param("n_init", "int", 10, _between(1, 1000)),
    ),
    "pca": (
        Param("n_components", "int", 2, _between(1, 4096)),
        Param("whiten", "bool", False),
    ),
    "logistic_regression": (
        Param("C", "float", 1.0, lambda v: _positive(v) or _between(0.0, 1e12)(v)),
        Param("fit_intercept", "bool", True),
        Param("max_iter", "int", 100, _between(1, 10_000)),
    ),
    "mlp_train": (
        Param("hidden", "int_list", (32,), _layers),
        Param("activation", "str", "relu", _choice("relu", "tanh")),
        Param("epochs", "int", 20, _between(1, 10_000)),
        Param("batch_size", "int", 64, _between(1, 1 << 20)),
        Param("lr", "float", 1e-2, lambda v: _positive(v) or _between(0.0, 10.0)(v)),
        Param("weight_decay", "float", 0.0, _between(0.0, 1.0)),
        Param("test_fraction", "float", 0.2, _between(0.01, 0.9)),
        _SEED,
    ),
}

# Precision (decimal digits kept) and tolerance chosen per model from measured backend disagreement: honest
# peers differ by about one unit at these scales, a cheat by hundreds. See compute/README in the report.
DEFAULT_PRECISION: dict[str, int] = {
    "linear_regression": 6,
    "kmeans": 6,
    "pca": 6,
    "logistic_regression": 5,
    "mlp_train": 4,
}
DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "linear_regression": Tolerance(abs=2, ppm=10),
    "kmeans": Tolerance(abs=2, ppm=10),
    "pca": Tolerance(abs=2, ppm=10),
    "logistic_regression": Tolerance(abs=3, ppm=50),
    "mlp_train": Tolerance(abs=3, ppm=1000),
}
MODELS = tuple(MODEL_PARAMS)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be in [{lo}, {hi}], got {value}")


def _coerce(param: Param, value: Any) -> ParamValue:
    where = f"params.{param.name}"
    if param.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(where, f"must be an integer, got {type(value).__name__}")
        out: ParamValue = value
    elif param.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(where, f"must be a number, got {type(value).__name__}")
        out = float(value)
        if not math.isfinite(out):
            raise SpecError(where, f"must be finite, got {value!r}")
    elif param.kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(where, f"must be true or false, got {type(value).__name__}")
        out = value
    elif param.kind == "str":
        if not isinstance(value, str):
            raise SpecError(where, f"must be a string, got {type(value).__name__}")
        out = value
    else:  # int_list
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in value
        ):
            raise SpecError(where, f"must be a list of integers, got {value!r}")
        out = tuple(value)
    reason = param.check(out)
    if reason is not None:
        raise SpecError(where, reason)
    return out


def validate_params(model: str, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Check ``params`` against ``model``'s table and return them with every default filled in."""
    if not isinstance(model, str) or model not in MODEL_PARAMS:  # a list from the wire is unhashable
        raise SpecError("model", f"unknown model {model!r}; known: {', '.join(MODELS)}")
    if not isinstance(params, Mapping):
        raise SpecError("params", f"must be a mapping, got {type(params).__name__}")
    table = {p.name: p for p in MODEL_PARAMS[model]}
    unknown = sorted(set(params) - set(table), key=str)
    if unknown:
        raise SpecError(f"params.{unknown[0]}", f"unknown parameter for {model}; known: {sorted(table)}")
    return {name: _coerce(p, params.get(name, p.default)) for name, p in sorted(table.items())}


@dataclass(frozen=True)
class JobSpec:
    """A validated, canonical job description; build it with :func:`make_spec` or :meth:`decode`."""

    model: str
    params: Mapping[str, ParamValue]
    dataset_digest: bytes
    precision: int
    tolerance: Tolerance
    requirements: Requirements = field(default_factory=Requirements)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", validate_params(self.model, self.params))
        if not isinstance(self.dataset_digest, bytes) or len(self.dataset_digest) != DIGEST_SIZE:
            raise SpecError("dataset_digest", f"must be {DIGEST_SIZE} bytes")
        _check_int("precision", self.precision, 0, 12)

    def to_wire(self) -> list[Any]:
        """The canonical structure that is MessagePack-encoded (lists only, fixed order)."""
        params = [[k, list(v) if isinstance(v, tuple) else v] for k, v in sorted(self.params.items())]
        return [
            SPEC_TAG,
            self.model,
            params,
            self.dataset_digest,
            self.precision,
            [self.tolerance.abs, self.tolerance.ppm],
            [self.requirements.device, self.requirements.min_memory_mb],
            [self.limits.time_limit_ms, self.limits.memory_limit_mb],
        ]

    def encode(self) -> bytes:
        """Canonical bytes of the spec."""
        return msgpack.packb(self.to_wire(), use_bin_type=True)

    @property
    def digest(self) -> bytes:
        """BLAKE2b-256 of the canonical encoding: the job's stable name."""
        return hashlib.blake2b(self.encode(), digest_size=DIGEST_SIZE).digest()

    @classmethod
    def decode(cls, data: bytes) -> JobSpec:
        """Parse untrusted bytes into a spec; anything malformed or non-canonical raises :class:`SpecError`."""
        if not isinstance(data, bytes) or len(data) > MAX_SPEC_BYTES:
            raise SpecError("spec", f"must be bytes of at most {MAX_SPEC_BYTES}")
        try:
            wire = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=DIGEST_SIZE)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise SpecError("spec", f"not valid MessagePack: {exc}") from exc
        if not isinstance(wire, list) or len(wire) != 8 or wire[0] != SPEC_TAG:
            raise SpecError("spec", f"expected an 8-item list tagged {SPEC_TAG!r}")
        _, model, params, digest, precision, tol, req, limits = wire
        if not isinstance(params, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in params
        ):
            raise SpecError("params", "must be a list of [name, value] pairs with str names")
        for name, value in (("tolerance", tol), ("requirements", req), ("limits", limits)):
            if not isinstance(value, list) or len(value) != 2:
                raise SpecError(name, "must be a 2-item list")
        spec = cls(
            model=model,
            params=dict((k, v) for k, v in params),
            dataset_digest=digest,
            precision=precision,
            tolerance=Tolerance(*tol),
            requirements=Requirements(*req),
            limits=Limits(*limits),
        )
        if spec.encode() != data:
            raise SpecError("spec", "encoding is not canonical (defaults omitted, order or types differ)")
        return spec


def make_spec(
    model: str,
    params: Mapping[str, Any] | None,
    dataset_digest: bytes,
    *,
    precision: int | None = None,
    tolerance: Tolerance | None = None,
    device: str = "any",
    min_memory_mb: int | None = None,
    time_limit_ms: int = 600_000,
    memory_limit_mb: int = 4096,
) -> JobSpec:
    """Build a spec with the model's default precision and tolerance; ``min_memory_mb`` defaults to the limit."""
    if not isinstance(model, str) or model not in MODEL_PARAMS:  # a list from the wire is unhashable
        raise SpecError("model", f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return JobSpec(
        model=model,
        params=dict(params or {}),
        dataset_digest=dataset_digest,
        precision=DEFAULT_PRECISION[model] if precision is None else precision,
        tolerance=DEFAULT_TOLERANCE[model] if tolerance is None else tolerance,
        requirements=Requirements(device, memory_limit_mb if min_memory_mb is None else min_memory_mb),
        limits=Limits(time_limit_ms, memory_limit_mb),
    )
