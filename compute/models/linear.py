"""Linear regression, OLS (``alpha = 0``) or ridge (``alpha > 0``), with an optional unpenalised intercept.

Every backend solves the same problem on centred data with an orthogonal-factorisation least-squares solver
(ridge as the augmented system ``[Xc; sqrt(alpha) I] w = [yc; 0]``): NumPy ``lstsq``, PyTorch ``gelsd`` on CPU
and Householder QR in float64 on CUDA (where ``gelsd`` does not exist); scikit-learn uses its own solvers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.models._torch import as_tensor, torch_for
from compute.models.base import Check, Fields, ModelDef


def _centred(X: np.ndarray, y: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    if not fit_intercept:
        return X, y, np.zeros(X.shape[1]), 0.0
    xm, ym = X.mean(axis=0), float(y.mean())
    return X - xm, y - ym, xm, ym


def _augmented(Xc: np.ndarray, yc: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    if alpha == 0.0:
        return Xc, yc
    d = Xc.shape[1]
    return np.vstack([Xc, np.sqrt(alpha) * np.eye(d)]), np.concatenate([yc, np.zeros(d)])


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    assert y is not None
    alpha, fit_intercept = float(params["alpha"]), bool(params["fit_intercept"])
    if backend == "sklearn":
        from sklearn.linear_model import LinearRegression, Ridge

        est = LinearRegression(fit_intercept=fit_intercept) if alpha == 0.0 else Ridge(
            alpha=alpha, fit_intercept=fit_intercept
        )
        est.fit(X, y)
        coef, intercept = np.asarray(est.coef_, dtype=np.float64), float(est.intercept_)
    else:
        Xc, yc, xm, ym = _centred(X, y, fit_intercept)
        A, b = _augmented(Xc, yc, alpha)
        if backend == "numpy":
            coef = np.linalg.lstsq(A, b, rcond=None)[0]
        else:
            torch, device = torch_for(backend)
            At = as_tensor(torch, A, device)
            bt = as_tensor(torch, b, device).unsqueeze(1)
            if device.type == "cpu":
                coef_t = torch.linalg.lstsq(At, bt, driver="gelsd").solution
            else:
                Q, R = torch.linalg.qr(At)
                coef_t = torch.linalg.solve_triangular(R, Q.T @ bt, upper=True)
            coef = coef_t.squeeze(1).cpu().numpy().astype(np.float64)
        intercept = ym - float(xm @ coef) if fit_intercept else 0.0
    return _fields(X, y, coef, intercept)


def _fields(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float) -> Fields:
    resid = y - (X @ coef + intercept)
    sse = float(resid @ resid)
    sst = float(((y - y.mean()) ** 2).sum())
    return {
        "coef": coef,
        "intercept": float(intercept),
        "mse": sse / len(y),
        "r2": 1.0 - sse / sst if sst > 0 else 0.0,
    }


def summarise(f: Fields) -> tuple[np.ndarray, dict[str, Any]]:
    coef = np.asarray(f["coef"])
    summary = np.concatenate([coef, [f["intercept"], f["r2"]]])
    return summary, {"coef": coef.tolist(), "intercept": f["intercept"], "r2": f["r2"], "mse": f["mse"]}


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """The normal equations ``X^T (y - Xw - b) = alpha w`` and ``sum(y - Xw - b) = 0`` hold, relative to the
    scale ``|X|_F |y|``; and the reported fit metrics match the coefficients. Cost O(n d), no solve."""
    assert y is not None
    coef = np.asarray(f["coef"], dtype=np.float64)
    if coef.shape != (X.shape[1],):
        return [Check("coef_shape", float("inf"), 0.0)]
    intercept, alpha = float(f["intercept"]), float(params["alpha"])
    resid = y - (X @ coef + intercept)
    scale = max(float(np.linalg.norm(X)) * float(np.linalg.norm(y)), 1e-300)
    grad = X.T @ resid - alpha * coef
    checks = [Check("normal_equation_residual", float(np.linalg.norm(grad)) / scale, 1e-9)]
    if params["fit_intercept"]:
        checks.append(Check("intercept_residual", abs(float(resid.sum())) / max(float(np.abs(y).sum()), 1e-300), 1e-9))
    else:
        checks.append(Check("intercept_is_zero", abs(intercept), 0.0))
    expect = _fields(X, y, coef, intercept)
    for key in ("mse", "r2"):
        checks.append(Check(f"{key}_matches", abs(float(f[key]) - expect[key]) / max(1.0, abs(expect[key])), 1e-9))
    return checks


MODEL = ModelDef("linear_regression", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "real", fit, summarise, certify)
