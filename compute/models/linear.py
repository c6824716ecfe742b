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


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """The normal equations of the floored problem hold in standardised coordinates (relative to what a
    backward-stable solver leaves), the intercept is the centred one, and the reported metrics and fitted
    values match the coefficients. Cost O(n d), no solve."""
    assert y is not None
    coef = np.asarray(f["coef"], dtype=np.float64)
    if coef.shape != (X.shape[1],):
        return [Check("coef_shape", float("inf"), 0.0)]
    fit_intercept = bool(params["fit_intercept"])
    Xc, yc, xm, ym = _centred(X, y, fit_intercept)
    pen = penalties(Xc, float(params["alpha"]))
    t = np.where(pen > 0, 1.0 / np.sqrt(np.where(pen > 0, pen, 1.0)), 1.0)
    u = coef / t
    resid = yc - Xc @ coef
    grad = (Xc * t).T @ resid - u
    size = float(np.sqrt(np.einsum("ij,ij->", Xc * t, Xc * t) + X.shape[1]))
    scale = max(size * (float(np.linalg.norm(yc)) + size * float(np.linalg.norm(u))), 1e-300)
    checks = [Check("normal_equation_residual", float(np.linalg.norm(grad)) / scale, 1e-9)]
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
    probe = np.asarray(f["probe_design"], dtype=np.float64)
    want = expect["probe_design"]
    gap = float(np.abs(probe - want).max(initial=0.0)) / max(float(np.abs(want).max(initial=0.0)), 1e-300) \
        if probe.shape == want.shape else float("inf")
    checks.append(Check("probe_rows_mismatch", gap, 1e-12))
    checks.append(Check("target_rms_mismatch", abs(float(f["target_rms"]) - expect["target_rms"])
                        / max(expect["target_rms"], 1e-300), 1e-12))
    return checks


MODEL = ModelDef("linear_regression", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "real", fit, summarise, certify)
