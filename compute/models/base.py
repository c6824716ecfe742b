"""What every model module declares: the backends, the artifact fields, a certificate check and the model
definition. Apart from the table in ``compute.models`` so a model module imports these without importing the
table that imports it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compute.canonical import ArtifactValue
from compute.errors import DatasetError

BACKENDS = ("numpy", "sklearn", "torch-cpu", "torch-cuda")

Fields = dict[str, ArtifactValue]


@dataclass(frozen=True)
class Check:
    """One certificate check: its measured value against the threshold it must not exceed."""

    name: str
    value: float
    threshold: float

    @property
    def ok(self) -> bool:
        return bool(self.value <= self.threshold)  # NaN fails


class NotCertifiable(Exception):
    """Raised by a model's ``certify`` when this instance has no sound certificate cheaper than re-running it
    (the message says why): the caller must re-run the job rather than read the checks as a pass."""


@dataclass(frozen=True)
class ModelDef:
    """How one model runs and is checked. ``fit`` returns canonical artifact fields; ``summarise`` turns those
    fields and the job's sketch seed (``compute.binding.sketch_seed``) into the summary floats (in order) and a
    display dict; ``certify`` returns the cheap checks. ``certifiable`` is False for a model whose checks are
    only necessary conditions (they can refute a result, never certify it): its results must be re-run."""

    name: str
    backends: tuple[str, ...]
    target: str  # "none", "real" or "labels"
    fit: Callable[[str, np.ndarray, np.ndarray | None, Mapping[str, Any]], Fields]
    summarise: Callable[[Fields, int], tuple[np.ndarray, dict[str, Any]]]
    certify: Callable[[np.ndarray, np.ndarray | None, Mapping[str, Any], Fields], list[Check]]
    certifiable: bool = True


# Beyond these magnitudes a sum of squares can underflow or overflow, and then backends that rescale (an SVD) and
# backends that do not (a covariance) disagree. The test is on exact data values, so every peer decides alike.
MIN_SCALE, MAX_SCALE = 1e-100, 1e100


def check_magnitude(name: str, a: np.ndarray) -> None:
    """Refuse (deterministically) an array whose largest magnitude is non-zero but outside the safe range."""
    top = float(np.abs(a).max()) if a.size else 0.0
    if top != 0.0 and not MIN_SCALE <= top <= MAX_SCALE:
        raise DatasetError(
            f"{name}'s largest magnitude {top:.3g} is outside [{MIN_SCALE:g}, {MAX_SCALE:g}]; rescale it", "magnitude"
        )


def smoothstep(t: np.ndarray) -> np.ndarray:
    """0 for t <= 0, 1 for t >= 1, and 3t² - 2t³ between: a C¹ switch built from + and × only (bit-stable)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def unit_probes(rows: int, dim: int, seed: int) -> np.ndarray:
    """``rows`` seeded random unit vectors in ``dim`` dimensions, the same on every machine."""
    Z = np.random.default_rng([seed, dim]).standard_normal((rows, dim))
    return Z / np.sqrt((Z * Z).sum(axis=1, keepdims=True))


def centre(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The column means and the centred data every backend is given (so none can centre differently).

    Twice: the first pass leaves each column off by a rounding residue of its mean (a few ulps of the offset,
    and a constant column becomes that residue everywhere); the second removes it to a few ulps of the
    variation itself (a constant column becomes exactly zero), so a backend's own centring of what it is
    given changes nothing that matters."""
    m1 = X.mean(axis=0)
    X1 = X - m1
    m2 = X1.mean(axis=0)
    return m1 + m2, X1 - m2


SKETCH_PROJECTIONS = 8  # random projections per sketched array: the sketch never grows with the array
SKETCH_WIDTH = SKETCH_PROJECTIONS + 1  # and the array's size
_SKETCH_BLOCK = 1 << 15  # columns of projection drawn at a time, so a huge array needs no 8 × size temporary


def sketch(arrays: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """Per array, in order: ``asinh(||a||)`` and ``SKETCH_PROJECTIONS`` seeded Gaussian projections of its
    direction ``a / ||a||`` (zeros for an all-zero array). What ties a summary to every entry of the arrays it
    does not list in full.

    A direction reads about N(0, 1) whatever the array's units or size, and asinh grows like a logarithm, so
    neither overflows the int64 summary; both move by at most the array's relative change, so honest runs, whose
    arrays agree to a relative 1e-9 or better, agree on them far inside the tolerance, while a change of one entry
    by a fraction ε of the norm moves each projection by about ε, and a rescaled array moves the size. Array ``i``
    draws its own stream ``PCG64([seed, i])``: two arrays never share a projection, and every machine draws the
    same ones."""
    out = np.zeros((len(arrays), SKETCH_WIDTH))
    for i, a in enumerate(arrays):
        v = np.asarray(a, dtype=np.float64).ravel()
        top = float(np.abs(v).max()) if v.size else 0.0
        if top == 0.0:
            continue
        if not np.isfinite(top):
            out[i] = np.nan  # a diverged array has no direction; the caller decides (quantise refuses NaN)
            continue
        u = v / top  # scaled first: the squares of values near 1e200 would overflow
        r = float(np.sqrt(u @ u))
        u /= r
        with np.errstate(over="ignore"):
            out[i, 0] = np.arcsinh(top * r)
        for start, projection in sketch_projections(seed, i, u.size):
            out[i, 1:] += projection @ u[start : start + projection.shape[1]]
    return out.ravel()


def sketch_projections(seed: int, index: int, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """The projections ``sketch`` applies to array ``index`` of ``size`` entries under ``seed``, as (first column,
    ``SKETCH_PROJECTIONS`` × width block) in column order: drawn a block at a time from ``PCG64([seed, index])``,
    so a huge array needs no ``SKETCH_PROJECTIONS`` × size temporary."""
    rng = np.random.Generator(np.random.PCG64([seed, index]))
    for start in range(0, size, _SKETCH_BLOCK):
        yield start, rng.standard_normal((SKETCH_PROJECTIONS, min(_SKETCH_BLOCK, size - start)))
