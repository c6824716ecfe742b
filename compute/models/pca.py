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
    NotCertifiable,
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


_CENTRE_ONCE = 1 << 24  # entries (128 MB): up to this the certificate keeps one centred copy of the data
# A certified result's summary entries are within this of the true decomposition's (an eighth of the default
# tolerance, 2 units at 6 digits).
SUMMARY_SLACK = 2.5e-7


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """All of ``V C Vᵀ`` against the claimed spectrum, the invariance residual, and a trace bound that no
    direction outside the claimed ones has as much variance as the last: O(n d m), the covariance never formed.

    With ``M = V C Vᵀ`` and ``R = C Vᵀ - Vᵀ M``: orthonormal ``V``, ``M = diag(λ)`` (so the claimed variances are
    the claimed directions' own, in order), and the left-over variance ``S - tr M`` bounds every eigenvalue of C
    outside the claimed span (a positive semi-definite block's largest eigenvalue is at most its trace); Weyl
    moves each by at most ``||R||``. Certified only where every claimed variance stands 2·GAP·S clear of the others
    and of that bound: then the summary's bump and cut weights are exactly 0 or 1 for the claim and the truth
    alike, and Davis–Kahan bounds each component's angle to its true eigenvector by ``||r_j|| / gap_j``, so the
    summary's error is bounded below the slack. Elsewhere (clustered variances, or left-over variance that could
    hide a larger direction: most full-rank data) only an eigendecomposition decides, which is what re-running
    costs: ``NotCertifiable``."""
    n, d = X.shape
    m = int(params["n_components"])
    V = np.asarray(f["components"], dtype=np.float64)
    lam = np.asarray(f["explained_variance"], dtype=np.float64)
    mu = np.asarray(f["mean"], dtype=np.float64)
    scale_f = np.asarray(f["scale"], dtype=np.float64)
    if V.shape != (m, d) or lam.shape != (m,) or mu.shape != (d,) or scale_f.shape != (m,):
        return [Check("shapes", float("inf"), 0.0)]
    if not (np.isfinite(V).all() and np.isfinite(lam).all()):
        return [Check("finite", float("inf"), 0.0)]
    m1 = X.sum(axis=0) / n
    var_raw = np.einsum("ij,ij->j", X, X) / n - m1 * m1
    # Centring implicitly (X v - 1 (m·v)) reads the data without writing a centred copy: these passes are
    # memory-bound, and centring every block every pass made the certificate as slow as the fit. It cancels
    # about (mean/spread)² of the digits, so only where the mean is within 100 spreads of zero in every
    # column; otherwise one centred copy (or, for data past 128 MB, centred blocks).
    implicit = bool((m1 * m1 <= 1e4 * var_raw).all()) and bool((var_raw > 0).all())
    if implicit:
        true_mean = m1
        total = float(var_raw.sum()) * n / (n - 1)
    elif n * d <= _CENTRE_ONCE:
        true_mean, Xc_all = centre(X)
        total = float(np.einsum("ij,ij->", Xc_all, Xc_all)) / (n - 1)
    else:
        m2 = sum(((B - m1).sum(axis=0) for B in _blocks(X)), np.zeros(d)) / n
        true_mean = m1 + m2
        total = sum(float(np.einsum("ij,ij->", B, B)) for B in _centred_blocks(X, m1, m2)) / (n - 1)

    def cov_times(B: np.ndarray) -> np.ndarray:
        if implicit:
            XB = X @ B - np.outer(np.ones(n), true_mean @ B)
            return (X.T @ XB - np.outer(true_mean, XB.sum(axis=0))) / (n - 1)
        out = np.zeros((d, B.shape[1]))
        for Xc in (_blocks(Xc_all) if n * d <= _CENTRE_ONCE else _centred_blocks(X, m1, m2)):
            out += Xc.T @ (Xc @ B)
        return out / (n - 1)

    scale = max(1.0, float(np.abs(true_mean).max()), float(np.sqrt(max(total, 0.0))))
    S = max(total, 1e-300)

    def deflate(B: np.ndarray) -> np.ndarray:
        return B - V.T @ (V @ B)

    # A few random directions outside the claimed span share the pass: their Rayleigh–Ritz values are true
    # variances outside it (lower bounds on the largest), which refute a claim that skipped a larger direction.
    probes = min(8, d - m)
    B0 = np.linalg.qr(deflate(np.random.default_rng(0).standard_normal((d, probes))))[0] if probes else None
    CW = cov_times(V.T if B0 is None else np.hstack([V.T, B0]))
    CV = CW[:, :m]
    M = V @ CV
    M = 0.5 * (M + M.T)
    R = CV - V.T @ M
    rho = float(np.linalg.norm(R))  # Frobenius: at least the spectral norm
    r_j = np.linalg.norm(CV - V.T * lam, axis=0)
    ortho = float(np.abs(V @ V.T - np.eye(m)).max())
    spectrum = float(np.abs(M - np.diag(lam)).max()) / S
    ratio_err = float(np.abs((lam / total if total > 0 else 0.0) - np.asarray(f["explained_variance_ratio"])).max())
    pivot = np.abs(V).argmax(axis=1)
    signed = bool((V[np.arange(m), pivot] > 0).all()) and bool((np.diff(lam) <= 0).all()) and bool((lam >= 0).all())
    want_scale = np.sqrt(lam) if bool(params["whiten"]) else np.ones(m)
    checks = [
        Check("mean_mismatch", float(np.abs(mu - true_mean).max()) / scale, 1e-9),
        Check("total_mismatch", abs(float(f["total_variance"]) - total) / S, 1e-9),
        Check("orthonormality", ortho, 1e-9),
        # The claimed variances are what the claimed directions carry, in order (a swap leaves M's diagonal
        # out of order against λ), with no coupling between them.
        Check("spectrum_mismatch", spectrum, 1e-9),
        Check("invariance_residual", rho / S, 1e-9),
        Check("ratio_mismatch", ratio_err, 1e-9),
        Check("scale_mismatch", float(np.abs(scale_f - want_scale).max(initial=0.0))
              / max(1.0, float(np.abs(want_scale).max(initial=0.0))), 1e-12),
        Check("whiten_mismatch", 0.0 if bool(f["whiten"]) == bool(params["whiten"]) else 1.0, 0.0),
        Check("sign_or_order_not_canonical", 0.0 if signed else 1.0, 0.0),
    ]
    extra = float("-inf")
    if B0 is not None:
        Q = np.linalg.qr(deflate(CW[:, m:]))[0]  # one power step
        extra = float(np.linalg.eigvalsh(Q.T @ deflate(cov_times(Q))).max())
    checks.append(Check("larger_direction_left_out", (extra - float(lam[-1])) / S, 1e-9))
    checks.append(Check("next_variance_below_found", (extra - float(f["next_variance"])) / S, 1e-9))
    if not all(c.ok for c in checks) or total <= 0:
        return checks
    # Every eigenvalue of C outside the claimed span is at most this (trace of the rest, widened by V's
    # departure from orthonormality and by Weyl's ||R||).
    rest = max(total - float(np.trace(M)), 0.0) + m * ortho * S + rho
    nxt = float(f["next_variance"])
    if m < d:
        checks.append(Check("next_variance_out_of_range", max(-nxt, nxt - rest, 0.0) / S, 1e-9))
    else:
        checks.append(Check("next_variance_out_of_range", abs(nxt) / S, 1e-9))
    h = GAP * S
    below = np.append(lam[1:], rest if m < d else -np.inf)
    above = np.insert(lam[:-1], 0, np.inf)
    gaps = np.minimum(lam - below, above - lam)  # each claimed variance's distance to its neighbours
    if float(gaps.min()) < 2.0 * h + 2.0 * rho:
        raise NotCertifiable(f"the variance left over ({rest / S:.2g} of the total) could hide a direction as large "
                             f"as the last claimed ({float(lam[-1]) / S:.2g}), or claimed variances are closer than "
                             f"{2 * GAP:g} of it (closest gap {float(gaps.min()) / S:.2g}); only an "
                             "eigendecomposition decides")
    # Davis–Kahan per component; each probe reading (z·v)² then moves by at most 3 sin θ.
    sin_theta = r_j / np.maximum(gaps - 2.0 * rho, 1e-300)
    checks.append(Check("component_angle_bound", 3.0 * float(sin_theta.max()), SUMMARY_SLACK))
    return checks


MODEL = ModelDef("pca", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "none", fit, summarise, certify)
