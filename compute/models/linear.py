"""Linear regression, OLS (``alpha = 0``) or ridge (``alpha > 0``), with an optional unpenalised intercept.

The data are centred here (``X`` twice, as PCA does, ``y`` too) so every backend is handed the same bits. The
problem every backend solves is ``min ||Xc w - yc||² + Σ_j (alpha + ρ_j) w_j²`` with a resolution floor
``ρ_j = TAU² ||Xc_j||²`` (TAU = 1e-6), written in standardised coordinates ``u_j = sqrt(alpha + ρ_j) w_j``
where it is ridge with a unit penalty: NumPy ``lstsq`` and PyTorch ``gelsd`` on the augmented system
``[Xs; I] u = [yc; 0]`` (Householder QR in float64 on CUDA, where ``gelsd`` does not exist), scikit-learn its
SVD ridge solver.

Why the floor. Without it, collinear or nearly collinear columns make the coefficients (and even the fitted
values, through which tiny singular values each solver truncates at its own ``rcond``) depend on the solver:
numpy and scikit-learn differed by up to 1e18 units on such designs. A threshold on a condition estimate
would only move the disagreement to the threshold. The floor is a smooth spectral filter instead: it changes a
direction of the standardised design with singular value σ (the largest is at most sqrt(d)) by a relative
TAU²/σ², invisible unless σ < 1e-3, i.e. unless columns are collinear to one part in a million; it bounds the
augmented system's condition by about sqrt(d)/TAU, so fitted values from any backward-stable solver agree to
about 1e-16 · sqrt(d) / TAU of ||yc||. Because the floor scales with each column, units do not matter.

What is compared: R² and the fitted values at up to 246 seeded rows, as ``(ŷ_i - ȳ) / rms(yc)`` (bounded by
sqrt(n), scale-free, never overflowing). Fitted values are unique where coefficients are not (a duplicated
column splits its weight arbitrarily); in a centred form they avoid the cancellation of a large intercept
against large coefficients. The artifact holds the coefficients and those centred rows, so the summary is
computed from the coefficients; all of it is certified. A sketch of the probe rows ends the summary. Fitted
values do not change under an invertible affine change of the columns (the regression is the same), so neither
do the summary's R² and fitted-value entries (the sketch of the rows does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.models._torch import as_tensor, torch_for
from compute.models.base import SKETCH_WIDTH, Check, Fields, ModelDef, centre, check_magnitude, sketch

TAU = 1e-6
# The arrays the summary's sketch covers. Not the coefficients: on collinear columns their split is set only by
# the resolution floor and honest backends differ there by 1e-5 of their norm (the hard corpus's
# duplicated-tiny-ridge); the fitted values at the probe rows bind them where they are determined.
SKETCHED = ("probe_design",)
# With R² and the sketch, the ledger's default max_summary_len of 256.
MAX_PROBE_ROWS = 255 - SKETCH_WIDTH * len(SKETCHED)
PROBE_SEED = 0x11E


def _centred(X: np.ndarray, y: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    if not fit_intercept:
        return X, y, np.zeros(X.shape[1]), 0.0
    xm, Xc = centre(X)
    ym, yc = centre(y[:, None])
    return Xc, yc[:, 0], xm, float(ym[0])


def penalties(Xc: np.ndarray, alpha: float) -> np.ndarray:
    """Each column's penalty: the spec's ``alpha`` plus the resolution floor."""
    return alpha + TAU**2 * np.einsum("ij,ij->j", Xc, Xc)


def probe_rows(n: int) -> np.ndarray:
    """The rows whose fitted values the summary holds (a function of n alone)."""
    if n <= MAX_PROBE_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng([PROBE_SEED, n]).choice(n, MAX_PROBE_ROWS, replace=False))


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    assert y is not None
    alpha, fit_intercept = float(params["alpha"]), bool(params["fit_intercept"])
    check_magnitude("X", X)
    check_magnitude("y", y)
    Xc, yc, xm, ym = _centred(X, y, fit_intercept)
    pen = penalties(Xc, alpha)
    # A column with no penalty is exactly zero (no alpha, no variation): any scale leaves it zero.
    t = np.where(pen > 0, 1.0 / np.sqrt(np.where(pen > 0, pen, 1.0)), 1.0)
    Xs = Xc * t
    d = X.shape[1]
    if backend == "sklearn":
        from sklearn.linear_model import Ridge

        u = np.asarray(Ridge(alpha=1.0, fit_intercept=False, solver="svd").fit(Xs, yc).coef_, dtype=np.float64)
    else:
        A, b = np.vstack([Xs, np.eye(d)]), np.concatenate([yc, np.zeros(d)])
        if backend == "numpy":
            u = np.linalg.lstsq(A, b, rcond=None)[0]
        else:
            torch, device = torch_for(backend)
            At = as_tensor(torch, A, device)
            bt = as_tensor(torch, b, device).unsqueeze(1)
            if device.type == "cpu":
                u_t = torch.linalg.lstsq(At, bt, driver="gelsd").solution
            else:
                Q, R = torch.linalg.qr(At)
                u_t = torch.linalg.solve_triangular(R, Q.T @ bt, upper=True)
            u = u_t.squeeze(1).cpu().numpy().astype(np.float64)
    coef = u * t
    intercept = ym - float(xm @ coef) if fit_intercept else 0.0
    return _fields(Xc, yc, y, coef, intercept)


def _fields(Xc: np.ndarray, yc: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float) -> Fields:
    # Residuals and fitted values in centred form: no large intercept cancels against large coefficients.
    fitted = Xc @ coef
    resid = yc - fitted
    sse = float(resid @ resid)
    sst = float(((y - y.mean()) ** 2).sum())
    return {
        "coef": coef,
        "intercept": float(intercept),
        "mse": sse / len(y),
        "r2": 1.0 - sse / sst if sst > 0 else 0.0,
        # The centred probe rows and the target's spread, so the summary is computed from the coefficients.
        "probe_design": np.ascontiguousarray(Xc[probe_rows(len(yc))]),
        "target_rms": float(np.sqrt((yc @ yc) / len(yc))),
    }


def summarise(f: Fields, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    coef = np.asarray(f["coef"], dtype=np.float64)
    fitted = np.asarray(f["probe_design"], dtype=np.float64) @ coef
    rms = float(f["target_rms"])
    # The probe rows themselves too: the fitted values alone would let coefficients and rows change together.
    summary = np.concatenate([[f["r2"]], fitted / rms if rms > 0 else np.zeros(fitted.size),
                              sketch([np.asarray(f[k]) for k in SKETCHED], seed)])
    return summary, {"coef": coef.tolist(), "intercept": f["intercept"], "r2": f["r2"], "mse": f["mse"]}


# A certified result's summary is within this of the optimum's, in summary values (R² and fitted values over the
# target's rms): an eighth of the default tolerance (2 units at 6 digits), far above honest backends' 1e-9.
SUMMARY_SLACK = 2.5e-7


def _summary_error_bounds(fit_err: float, fit_err_probe: float, resid: float, sst: float, rms: float,
                          sse_err: float | None = None) -> tuple[float, float]:
    """The largest change of a fitted-value entry and of R² between the claim and the optimum, in summary units,
    from bounds on ``||Xs δ||`` (all rows) and ``max |Xs δ|`` (probe rows)."""
    d_fit = fit_err_probe / rms if rms > 0 else 0.0
    if sse_err is None:  # |Δ sse| = |2 r·Xsδ + ||Xsδ||²| ≤ 2 ||r|| ||Xsδ|| + ||Xsδ||²
        sse_err = 2.0 * resid * fit_err + fit_err * fit_err
    return d_fit, (sse_err / sst if sst > 0 else 0.0)


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """How far the claim's summary can be from the optimum's, bounded in the problem's own conditioning, and
    the intercept, metrics and probe rows reproduced from the coefficients.

    In standardised coordinates the floored problem is ``min ||Xs u - yc||² + ||u||²``, a quadratic with Hessian
    ``H = XsᵀXs + I`` (eigenvalues ≥ 1), so the claim's distance to the optimum is exactly ``δ = H⁻¹ g`` for its
    gradient ``g = H u - Xsᵀ yc``, and its fitted values are off by ``Xs δ``. First the O(n d) bound
    ``||Xs δ|| ≤ ||g|| / 2`` (``||Xs H⁻¹|| = max σ/(σ²+1) ≤ 1/2``); where rounding in ``g`` on an ill-conditioned
    design leaves that inconclusive, ``δ`` itself by a Cholesky solve with ``H`` (O(n d²), still cheaper than the
    fit's SVD). A coefficient moved along the design's weakest direction keeps a small normal-equation residual
    relative to the design's norm, but not a small ``Xs δ``."""
    assert y is not None
    coef = np.asarray(f["coef"], dtype=np.float64)
    if coef.shape != (X.shape[1],) or not np.isfinite(coef).all():
        return [Check("coef_shape", float("inf"), 0.0)]
    fit_intercept = bool(params["fit_intercept"])
    Xc, yc, xm, ym = _centred(X, y, fit_intercept)
    pen = penalties(Xc, float(params["alpha"]))
    t = np.where(pen > 0, 1.0 / np.sqrt(np.where(pen > 0, pen, 1.0)), 1.0)
    Xs = Xc * t
    u = coef / t
    resid = yc - Xs @ u
    g = u - Xs.T @ resid
    sst = float(((y - y.mean()) ** 2).sum())
    rms = float(np.sqrt((yc @ yc) / len(yc)))
    r_norm = float(np.linalg.norm(resid))
    e = 0.5 * float(np.linalg.norm(g))
    d_fit, d_r2 = _summary_error_bounds(e, e, r_norm, sst, rms)
    tier = 1.0
    if max(d_fit, d_r2) > SUMMARY_SLACK:
        # Rounding in g (about eps ||Xs||² ||u||) can exceed the slack on a collinear design; the exact δ damps
        # it by the design's own conditioning (each direction by σ/(σ²+1)).
        H = Xs.T @ Xs
        H[np.diag_indices_from(H)] += 1.0
        delta = _spd_solve(H, g)
        fd = Xs @ delta
        probe = fd[probe_rows(len(yc))]
        sse_err = abs(2.0 * float(resid @ fd) + float(fd @ fd))
        # Twice the computed values: the solve's own rounding (relative eps κ(H) in the weakest directions).
        d_fit, d_r2 = _summary_error_bounds(0.0, 2.0 * float(np.abs(probe).max(initial=0.0)), r_norm, sst, rms,
                                            2.0 * sse_err)
        tier = 2.0
    checks = [
        Check("fitted_value_error_bound", d_fit, SUMMARY_SLACK),
        Check("r2_error_bound", d_r2, SUMMARY_SLACK),
        Check("bound_tier", tier, 2.0),  # 1: the O(n d) bound sufficed; 2: the Cholesky solve was needed
    ]
    intercept = float(f["intercept"])
    if fit_intercept:
        expect_b = ym - float(xm @ coef)
        size_b = max(abs(ym) + float(np.abs(xm) @ np.abs(coef)), 1e-300)
        checks.append(Check("intercept_mismatch", abs(intercept - expect_b) / size_b, 1e-12))
    else:
        checks.append(Check("intercept_is_zero", abs(intercept), 0.0))
    expect = _fields(Xc, yc, y, coef, intercept)
    for key in ("mse", "r2"):
        checks.append(Check(f"{key}_matches", abs(float(f[key]) - expect[key]) / max(1.0, abs(expect[key])), 1e-9))
    probe_x = np.asarray(f["probe_design"], dtype=np.float64)
    want = expect["probe_design"]
    gap = float(np.abs(probe_x - want).max(initial=0.0)) / max(float(np.abs(want).max(initial=0.0)), 1e-300) \
        if probe_x.shape == want.shape else float("inf")
    checks.append(Check("probe_rows_mismatch", gap, 1e-12))
    checks.append(Check("target_rms_mismatch", abs(float(f["target_rms"]) - expect["target_rms"])
                        / max(expect["target_rms"], 1e-300), 1e-12))
    return checks


def _spd_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``H⁻¹ g`` for a symmetric positive definite ``H`` (eigenvalues ≥ 1 here) by Cholesky."""
    L = np.linalg.cholesky(H)
    return np.linalg.solve(L.T, np.linalg.solve(L, g))


MODEL = ModelDef("linear_regression", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "real", fit, summarise, certify)
