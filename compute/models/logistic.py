"""L2-regularised logistic regression (binary, or multinomial softmax for more classes).

The objective is scikit-learn's: ``C * sum(log-loss) + ||W||² / 2`` with an unpenalised intercept. It is
strictly convex in the identifiable parameters, so every backend reaches the same optimum: NumPy and PyTorch by
damped Newton steps (pseudo-inverse of the Hessian, which handles the multinomial intercept's free shift),
scikit-learn by its Newton–Cholesky solver. Canonical form: multinomial intercepts shifted to sum to zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.errors import DatasetError, ExecutionError
from compute.models._torch import as_tensor, torch_for
from compute.models.base import Check, Fields, ModelDef

MAX_NEWTON_PARAMS = 4096
_GRAD_TOL = 1e-12  # on the per-sample-averaged gradient; Newton reaches it in a handful of steps


def classes_of(y: np.ndarray | None) -> np.ndarray:
    """The sorted class labels of ``y``; they must be integers and at least two."""
    if y is None:
        raise DatasetError("this model needs a target column y of class labels", "target_missing")
    if not np.array_equal(y, np.round(y)):
        raise DatasetError("y must hold integer class labels", "labels_not_integer")
    classes = np.unique(y)
    if classes.size < 2:
        raise DatasetError(f"y must contain at least two classes, found {classes.size}", "too_few_classes")
    return classes


def _design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


class _Ops:
    """The few array operations Newton needs, for NumPy or PyTorch (whose spellings differ)."""

    def __init__(self, torch: Any = None, device: Any = None) -> None:
        self.torch, self.device = torch, device

    def zeros(self, *shape: int) -> Any:
        if self.torch is None:
            return np.zeros(shape)
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def softplus(self, z: Any) -> Any:
        return np.logaddexp(0.0, z) if self.torch is None else self.torch.logaddexp(z * 0.0, z)

    def logsumexp(self, Z: Any) -> Any:
        return _np_logsumexp(Z) if self.torch is None else self.torch.logsumexp(Z, 1)

    def softmax(self, Z: Any) -> Any:
        if self.torch is None:
            E = np.exp(Z - Z.max(axis=1, keepdims=True))
            return E / E.sum(axis=1, keepdims=True)
        return self.torch.softmax(Z, dim=1)

    def sigmoid(self, Z: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-Z)) if self.torch is None else self.torch.sigmoid(Z)

    def diag(self, v: Any) -> Any:
        return np.diag(v) if self.torch is None else self.torch.diag(v)

    def pinv(self, H: Any) -> Any:
        # The pseudo-inverse drops the multinomial intercepts' free common shift (a zero eigenvalue).
        if self.torch is None:
            return np.linalg.pinv(H, rcond=1e-12, hermitian=True)
        return self.torch.linalg.pinv(H, rtol=1e-12, hermitian=True)


def _newton(ops: _Ops, A: Any, Y: Any, C: float, penal: Any, max_iter: int) -> Any:
    """Damped Newton (Armijo backtracking) on ``C * sum(loss) + ||penal * W||² / 2``; ``Y`` is one-hot, one
    column for the binary case (sigmoid) or K columns (softmax)."""
    n, p = A.shape
    K = Y.shape[1]
    binary = K == 1
    W = ops.zeros(p, K)
    reg = penal**2

    def objective(W: Any) -> float:
        Z = A @ W
        loss = ops.softplus(Z[:, 0]) - Y[:, 0] * Z[:, 0] if binary else ops.logsumexp(Z) - (Y * Z).sum(1)
        return float(C * loss.sum() + 0.5 * (reg[:, None] * W * W).sum())

    f = objective(W)
    for _ in range(max_iter):
        P = ops.sigmoid(A @ W) if binary else ops.softmax(A @ W)
        G = C * (A.T @ (P - Y)) + reg[:, None] * W
        if float(abs(G).max()) <= _GRAD_TOL * C * n:
            break
        H = ops.zeros(p * K, p * K)
        for a in range(K):
            for b in range(a, K):
                w = P[:, 0] * (1.0 - P[:, 0]) if binary else P[:, a] * ((1.0 if a == b else 0.0) - P[:, b])
                block = C * (A.T @ (A * w[:, None]))
                if a == b:
                    block = block + ops.diag(reg)
                H[a * p : (a + 1) * p, b * p : (b + 1) * p] = block
                H[b * p : (b + 1) * p, a * p : (a + 1) * p] = block.T
        g = G.T.reshape(-1)
        step_flat = -(ops.pinv(H) @ g)
        slope = float((g * step_flat).sum())
        step = step_flat.reshape(K, p).T
        t = 1.0
        while True:
            f_new = objective(W + t * step)
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10:  # no descent left at working precision
            break
        W, f = W + t * step, f_new
    return W


def _np_logsumexp(Z: np.ndarray) -> np.ndarray:
    m = Z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]


def fit(backend: str, X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any]) -> Fields:
    classes = classes_of(y)
    assert y is not None
    C, fit_intercept, max_iter = float(params["C"]), bool(params["fit_intercept"]), int(params["max_iter"])
    binary = classes.size == 2
    K = 1 if binary else classes.size
    d = X.shape[1]
    if backend == "sklearn":
        from sklearn.linear_model import LogisticRegression

        est = LogisticRegression(C=C, fit_intercept=fit_intercept, max_iter=max_iter, tol=1e-10,
                                 solver="newton-cholesky")
        est.fit(X, y)
        coef = np.asarray(est.coef_, dtype=np.float64)
        intercept = np.asarray(est.intercept_, dtype=np.float64) if fit_intercept else np.zeros(K)
    else:
        p = d + int(fit_intercept)
        if p * K > MAX_NEWTON_PARAMS:
            raise ExecutionError(f"{p * K} parameters exceed the Newton limit {MAX_NEWTON_PARAMS}; use sklearn",
                                 "newton_limit")
        A = _design(X, fit_intercept)
        Y = (y[:, None] == classes[None, 1:]) if binary else (y[:, None] == classes[None, :])
        Y = Y.astype(np.float64)
        penal = np.concatenate([np.ones(d), np.zeros(int(fit_intercept))])
        if backend == "numpy":
            W = _newton(_Ops(), A, Y, C, penal, max_iter)
        else:
            torch, device = torch_for(backend)

            def t(a: np.ndarray) -> Any:
                return as_tensor(torch, a, device)

            W = _newton(_Ops(torch, device), t(A), t(Y), C, t(penal), max_iter).cpu().numpy()
        coef = np.ascontiguousarray(W[:d].T)
        intercept = W[d] if fit_intercept else np.zeros(K)
    if not binary:
        intercept = intercept - intercept.mean()
    return _fields(X, y, classes, coef, intercept)


def _scores(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    return X @ coef.T + intercept


def _fields(X: np.ndarray, y: np.ndarray, classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> Fields:
    Z = _scores(X, coef, intercept)
    if coef.shape[0] == 1:
        pred = classes[(Z[:, 0] > 0).astype(int)]
        yb = (y == classes[1]).astype(np.float64)
        loss = float(np.mean(np.logaddexp(0.0, Z[:, 0]) - yb * Z[:, 0]))
    else:
        pred = classes[Z.argmax(axis=1)]
        idx = np.searchsorted(classes, y)
        loss = float(np.mean(_np_logsumexp(Z) - Z[np.arange(len(y)), idx]))
    return {
        "coef": np.asarray(coef, dtype=np.float64),
        "intercept": np.asarray(intercept, dtype=np.float64),
        "classes": classes.astype(np.float64),
        "accuracy": float(np.mean(pred == y)),
        "log_loss": loss,
    }


def summarise(f: Fields) -> tuple[np.ndarray, dict[str, Any]]:
    coef, intercept = np.asarray(f["coef"]), np.asarray(f["intercept"])
    summary = np.concatenate([coef.ravel(), intercept, [f["accuracy"], f["log_loss"]]])
    return summary, {
        "coef": coef.tolist(), "intercept": intercept.tolist(), "accuracy": f["accuracy"], "log_loss": f["log_loss"],
    }


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """First-order optimality of the strictly convex objective (its gradient vanishes, so this is the unique
    optimum), the intercept gauge, and the reported accuracy and loss. One pass over the data, O(n d K)."""
    classes = classes_of(y)
    assert y is not None
    coef, intercept = np.asarray(f["coef"], dtype=np.float64), np.asarray(f["intercept"], dtype=np.float64)
    K = 1 if classes.size == 2 else classes.size
    if coef.shape != (K, X.shape[1]) or intercept.shape != (K,):
        return [Check("shapes", float("inf"), 0.0)]
    C, n = float(params["C"]), X.shape[0]
    Z = _scores(X, coef, intercept)
    if K == 1:
        R = (1.0 / (1.0 + np.exp(-Z))) - (y == classes[1]).astype(np.float64)[:, None]
    else:
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        R = E / E.sum(axis=1, keepdims=True) - (y[:, None] == classes[None, :])
    grad_w = C * (R.T @ X) + coef
    grad_b = C * R.sum(axis=0)
    scale = C * n * max(1.0, float(np.abs(X).max()))
    checks = [Check("gradient", float(np.abs(grad_w).max()) / scale, 1e-8)]
    if params["fit_intercept"]:
        checks.append(Check("intercept_gradient", float(np.abs(grad_b).max()) / (C * n), 1e-8))
    else:
        checks.append(Check("intercept_is_zero", float(np.abs(intercept).max()), 0.0))
    if K > 1:
        checks.append(Check("intercept_gauge", abs(float(intercept.sum())), 1e-9))
    expect = _fields(X, y, classes, coef, intercept)
    checks.append(Check("accuracy_matches", abs(float(f["accuracy"]) - expect["accuracy"]), 0.0))
    checks.append(Check("log_loss_matches", abs(float(f["log_loss"]) - expect["log_loss"]), 1e-9))
    return checks


MODEL = ModelDef("logistic_regression", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "labels", fit, summarise,
                 certify)
