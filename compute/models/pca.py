"""PCA by an exact eigendecomposition (never randomised low-rank: ``torch.pca_lowrank`` was 32% off).

The data are centred here (twice: see ``base.centre``), so every backend starts from the same bits. NumPy and
PyTorch take ``eigh`` of the float64 covariance ``Xc^T Xc / (n-1)``; scikit-learn uses its full SVD. Each
returns one eigenpair past the last component asked for, because where the cut falls decides what is well
defined. Artifact (canonical form):
components in decreasing variance, each signed so its largest-magnitude entry is positive, the variances
(clamped at 0), the next variance past the cut and the total. ``whiten`` changes only the transform, recorded
as the per-component scale.

What is compared. Individual eigenvectors are not unique when eigenvalues (nearly) coincide, the top-m subspace
is not unique when the cut falls inside such a cluster, and components past the data's rank are noise; the
sign convention itself is arbitrary when two entries tie. Deciding any of this with a threshold (a rank test,
a gap test with a guard band, a refusal in the band) moves the problem to the threshold: data built to sit on
it makes two honest backends decide differently, and one error against one result is a dispute. So the summary
makes no decision at all. Every entry is a *spectral function* of the covariance C: basis-free (the same for any
choice of vectors within a cluster, and sign-free), and Lipschitz in C, so backends whose covariances differ by
||ΔC|| (measured below 3e-15 of the total variance S) agree to about ||ΔC|| / (GAP·S).

With h = GAP·S, a bump b(t) = 1 - smoothstep(|t|) and a cut c(λ) = smoothstep((λ - λ_{m+1}) / h) (zero at and
below the next eigenvalue, so it never needs the vectors past the m-th), the slots 1..m are split into at most
MAX_GROUPS runs g and each run is summarised by the matrix

    T_g = f_g(C),   f_g(λ) = c(λ) · Σ_{i in g} b((λ - λ_i) / h),

read through r seeded unit probes z as the quadratic forms z^T T_g z = Σ_j f_g(λ_j) (z·v_j)², beside the run's
variance share Σ_{i in g} λ_i / S, after log10(S). An isolated component (gap ≥ h both sides) contributes exactly
(z·v_i)²; a cluster of eigenvalues within h contributes its projector, whichever basis a backend chose; a cut
inside a cluster fades the partial cluster out continuously; components of the null space (λ ≈ 0 = λ_{m+1})
weigh nothing, so n_components above the numerical rank is allowed and its extra slots read as zero. f_g moves
by at most ~1.5/h per unit of λ, so even a gap built to sit at any particular size cannot split two backends.
The price: eigenvalues closer than GAP of the total variance are compared as one cluster. Then a
sketch (``base.sketch``) of the mean, the variances, their ratios and the whitening scale. Summary length is
1 + G (1 + r) + 36 ≤ 256 for every m (G = min(m, 64), r ≤ 16).

The only refusals are deterministic functions of the shape and the exact data: n_components above
min(n - 1, d) (``SpecError``) and data whose largest magnitude is outside [1e-100, 1e100] (``DatasetError``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from compute.errors import SpecError
from compute.models._torch import as_tensor, torch_for
from compute.models.base import (
    SKETCH_WIDTH,
    Check,
    Fields,
    ModelDef,
    centre,
    check_magnitude,
    sketch,
    smoothstep,
    unit_probes,
)

GAP = 1e-6  # eigenvalues closer than GAP · (total variance) are compared as one cluster
MAX_GROUPS = 64
MAX_PROBES = 16
SUMMARY_BUDGET = 256  # the ledger's default max_summary_len
# The arrays the sketch covers. Not the components: within a cluster of eigenvalues no basis is the right one,
# so honest backends differ there; the probe readings bind them basis-free.
SKETCHED = ("mean", "explained_variance", "explained_variance_ratio", "scale")
SKETCH_LEN = SKETCH_WIDTH * len(SKETCHED)
PROBE_SEED = 0x9CA


def _covariance_eigh(X: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Top-m eigenvectors (rows), eigenvalues, the mean and the trace of X's covariance, by NumPy ``eigh``."""
    mean = X.mean(axis=0)
    Xc = X - mean
    cov = (Xc.T @ Xc) / (X.shape[0] - 1)
    vals, vecs = np.linalg.eigh(cov)
    top = np.argsort(vals)[::-1][:m]
    return vecs[:, top].T, vals[top], mean, float(np.trace(cov))


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    n, d = X.shape
    m = int(params["n_components"])
    if m > min(n - 1, d):
        raise SpecError("params.n_components", f"{m} exceeds min(n_samples - 1, n_features) = {min(n - 1, d)}")
    check_magnitude("X", X)
    mean, Xc = centre(X)
    total = float(np.einsum("ij,ij->", Xc, Xc)) / (n - 1)
    k = min(m + 1, d)  # one eigenpair past the cut
    if backend == "sklearn":
        from sklearn.decomposition import PCA

        with np.errstate(invalid="ignore", divide="ignore"):  # its variance ratio is 0/0 on all-zero data
            est = PCA(n_components=k, svd_solver="full").fit(Xc)
        comps, var = est.components_, est.explained_variance_
    elif backend == "numpy":
        comps, var, _, _ = _covariance_eigh(Xc, k)
    else:
        torch, device = torch_for(backend)
        Xt = as_tensor(torch, Xc, device)
        vals, vecs = torch.linalg.eigh((Xt.T @ Xt) / (n - 1))
        top = torch.argsort(vals, descending=True)[:k]
        comps, var = vecs[:, top].T.cpu().numpy(), vals[top].cpu().numpy()
    comps = np.asarray(comps, dtype=np.float64)[:m]
    # A covariance has no negative eigenvalue; rounding gives the null space tiny ones of either sign.
    var_all = np.maximum(np.asarray(var, dtype=np.float64), 0.0)
    var, nxt = var_all[:m], float(var_all[m]) if k > m else 0.0
    # Sign convention: the entry of largest magnitude is positive.
    pivot = np.abs(comps).argmax(axis=1)
    comps = comps * np.sign(comps[np.arange(m), pivot])[:, None]
    return {
        "components": comps,
        "explained_variance": var,
        "explained_variance_ratio": var / total if total > 0 else np.zeros(m),
        "mean": mean,
        "whiten": bool(params["whiten"]),
        "scale": np.sqrt(var) if params["whiten"] else np.ones(m),
        "next_variance": nxt,
        "total_variance": total,
    }


def summary_shape(m: int) -> tuple[list[np.ndarray], int]:
    """The slot runs and the probe count for m components (a function of m alone)."""
    groups = np.array_split(np.arange(m), min(m, MAX_GROUPS))
    probes = min(MAX_PROBES, max(1, (SUMMARY_BUDGET - 1 - SKETCH_LEN) // len(groups) - 1))
    return groups, probes


def summarise(f: Fields, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    V = np.asarray(f["components"], dtype=np.float64)
    lam = np.asarray(f["explained_variance"], dtype=np.float64)
    ratio = np.asarray(f["explained_variance_ratio"], dtype=np.float64)
    S, nxt = float(f["total_variance"]), float(f["next_variance"])
    m, d = V.shape
    groups, r = summary_shape(m)
    values = np.zeros(1 + len(groups) * (1 + r) + SKETCH_LEN)
    values[-SKETCH_LEN:] = sketch([np.asarray(f[k]) for k in SKETCHED], seed)
    if S > 0:  # S is 0 exactly when the centred data are exactly 0: the same bits for every backend
        h = GAP * S
        cut = smoothstep((lam - nxt) / h) if m < d else np.ones(m)
        Q2 = (unit_probes(r, d, PROBE_SEED) @ V.T) ** 2  # (z_a · v_j)²
        values[0] = np.log10(S)
        for g, slots in enumerate(groups):
            bump = 1.0 - smoothstep(np.abs(lam[slots, None] - lam[None, :]) / h)  # [slot i in g, eigenpair j]
            weight = cut * bump.sum(axis=0)
            at = 1 + g * (1 + r)
            values[at] = lam[slots].sum() / S
            values[at + 1 : at + 1 + r] = Q2 @ weight
    return values, {
        "components": V.tolist(),
        "explained_variance": lam.tolist(),
        "explained_variance_ratio": ratio.tolist(),
        "total_variance": S,
    }


def _blocks(X: np.ndarray, rows: int = 65536) -> Iterator[np.ndarray]:
    for start in range(0, X.shape[0], rows):
        yield X[start : start + rows]


def _centred_blocks(X: np.ndarray, m1: np.ndarray, m2: np.ndarray, rows: int = 65536) -> Iterator[np.ndarray]:
    # Centring (as ``centre`` does) before any product keeps a large offset from cancelling away the
    # variation, and costs no n × d temporary: one block at a time.
    for B in _blocks(X, rows):
        yield (B - m1) - m2


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """Orthonormal components that satisfy ``C v = λ v`` (residual relative to λ₁), the claimed mean, total and
    variance ratio, no direction outside the claimed ones with more variance than the last, and a next
    variance between what the probe finds outside and what the trace leaves.

    The covariance is never formed: every step is a product of centred row blocks with a thin block, and the
    eigen-residual shares its passes with the first block of random probe vectors. The probe (one power step
    and a Rayleigh–Ritz estimate on up to 8 deflated directions) catches a skipped direction whose variance
    stands out; one within a hair of the claimed ones is left to the summary comparison."""
    n, d = X.shape
    m = int(params["n_components"])
    V = np.asarray(f["components"], dtype=np.float64)
    lam = np.asarray(f["explained_variance"], dtype=np.float64)
    mu = np.asarray(f["mean"], dtype=np.float64)
    if V.shape != (m, d) or lam.shape != (m,) or mu.shape != (d,):
        return [Check("shapes", float("inf"), 0.0)]
    m1 = X.sum(axis=0) / n
    m2 = sum(((B - m1).sum(axis=0) for B in _blocks(X)), np.zeros(d)) / n
    true_mean = m1 + m2
    total = sum(float(np.einsum("ij,ij->", B, B)) for B in _centred_blocks(X, m1, m2)) / (n - 1)
    scale = max(1.0, float(np.abs(true_mean).max()), float(np.sqrt(max(total, 0.0))))

    def cov_times(B: np.ndarray) -> np.ndarray:
        out = np.zeros((d, B.shape[1]))
        for Xc in _centred_blocks(X, m1, m2):
            out += Xc.T @ (Xc @ B)
        return out / (n - 1)

    def deflate(B: np.ndarray) -> np.ndarray:
        return B - V.T @ (V @ B)

    rest = d - m
    probes = min(8, rest)
    B0 = np.linalg.qr(deflate(np.random.default_rng(0).standard_normal((d, probes))))[0] if probes else None
    CW = cov_times(V.T if B0 is None else np.hstack([V.T, B0]))
    CV = CW[:, :m]
    lam1 = float(lam[0]) if lam[0] > 0 else 1.0  # all-zero centred data: every residual is zero anyway
    tot1 = max(total, 1e-300)
    residual = float(np.linalg.norm(CV - V.T * lam)) / lam1
    ortho = float(np.abs(V @ V.T - np.eye(m)).max())
    ratio_err = float(np.abs((lam / total if total > 0 else 0.0) - np.asarray(f["explained_variance_ratio"])).max())
    pivot = np.abs(V).argmax(axis=1)
    signed = bool((V[np.arange(m), pivot] > 0).all()) and bool((np.diff(lam) <= 1e-12 * lam1).all())
    signed = signed and bool((lam >= 0).all())
    extra = float("-inf")
    if B0 is not None:
        Q = np.linalg.qr(deflate(CW[:, m:]))[0]
        extra = float(np.linalg.eigvalsh(Q.T @ deflate(cov_times(Q))).max())
    nxt = float(f["next_variance"])
    if m == d:
        next_err = abs(nxt)
    else:
        # The true next eigenvalue lies between the probe's Ritz value and both λ_m and what the trace leaves.
        upper = min(float(lam[-1]), max(total - float(lam.sum()), 0.0))
        next_err = max(extra - nxt, nxt - upper, -nxt, 0.0) / lam1
    return [
        Check("mean_mismatch", float(np.abs(mu - true_mean).max()) / scale, 1e-9),
        Check("total_mismatch", abs(float(f["total_variance"]) - total) / tot1, 1e-9),
        Check("eigen_residual", residual, 1e-8),
        Check("orthonormality", ortho, 1e-9),
        Check("ratio_mismatch", ratio_err, 1e-9),
        Check("sign_or_order_not_canonical", 0.0 if signed else 1.0, 0.0),
        Check("larger_direction_left_out", (extra - float(lam[-1])) / lam1, 1e-6),
        Check("next_variance_out_of_range", next_err, 1e-6),
    ]


MODEL = ModelDef("pca", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "none", fit, summarise, certify)
