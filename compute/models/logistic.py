"""L2-regularised logistic regression (binary, or multinomial softmax for more classes).

The objective is scikit-learn's: ``C * sum(log-loss) + ||W||² / 2`` with an unpenalised intercept. It is
strictly convex in the identifiable parameters, so it has one optimum, and every backend ends there: NumPy and
PyTorch by damped Newton steps (pseudo-inverse of the Jacobi-scaled Hessian, which drops the multinomial
intercepts' free shift and nothing else), scikit-learn by its Newton–Cholesky solver followed by the same
Newton steps. Every solver runs until no descent is left at working precision: the flat, penalty-dominated
directions of a large C are pinned only at that floor (stopping at a relative gradient of 1e-12, as before,
left two backends' probabilities 2.5e-4 apart), and scikit-learn's own stopping rule, or its lbfgs fallback on
an ill-conditioned Hessian, ends short of it. ``max_iter`` is each solver's own budget; up to POLISH_STEPS more
Newton steps finish, so a run capped early still reports the optimum.

The problem is posed on shared, well-conditioned coordinates: with an intercept the features are centred (the
intercept absorbs the shift), without one they are rotated so that their common offset lies on one axis (the
penalty does not see a rotation). Either way the optimum is the same model; an offset of 1e6 had made the
Hessian so ill-conditioned that our Newton stalled or dropped every direction. Canonical form: multinomial
intercepts (of the centred model) shifted to sum to zero.

What is compared: the predicted class probabilities at up to 236 seeded rows (then a sketch of those rows and
the classes), the mean log-loss and the mean
probability of the true class. Not the coefficients: with a large C on separable data the optimum is far out
and the objective nearly flat, the gradient's own rounding (about 1e-16 · C · n) leaves them undetermined to
the summary's precision. Probabilities are what the coefficients are for, saturate where the coefficients run
away, and move by at most sqrt(1/C) times the coefficients' slack in those flat directions; the mean
true-class probability replaces the accuracy, which jumps when a row sits on the boundary.

A result still short of the optimum after all that is refused (``ExecutionError`` ``not_converged``) rather
than reported, since nothing can certify it: the test is the certificate's own gradient measure against
OPTIMAL = 1e-8, and finished runs end at 1e-9 or below (the corpus and 3,000 random jobs never came near it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from compute.errors import BackendUnavailable, DatasetError, ExecutionError
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
)

MAX_NEWTON_PARAMS = 4096
# The arrays the summary's sketch covers. Not the coefficients or intercepts: at a large C on separable data they
# are undetermined to the summary's precision (see above); the probabilities bind them where they matter.
SKETCHED = ("probe_design", "classes")
# With the two means and the sketch, the ledger's default max_summary_len of 256.
MAX_PROBE_VALUES = 254 - SKETCH_WIDTH * len(SKETCHED)
PROBE_SEED = 0x106
# On the per-sample-averaged gradient: at or below the rounding floor, so Newton stops where no descent is left.
# Stopping any earlier (1e-12 here before) left the probabilities of two backends 2.5e-4 apart at large C: the
# flat, penalty-dominated directions are pinned only at the floor.
_GRAD_TOL = 1e-15
POLISH_STEPS = 50  # Newton steps every backend may add after its own solver: quadratic convergence needs few
# A result this close to the optimum is certified; one farther out is refused (finished runs end at 1e-9 or
# below).
OPTIMAL = 1e-8
_PINV_RTOL = 1e-14  # of the Jacobi-scaled Hessian (largest eigenvalue at most its size): rounding level


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

    def newton_step(self, H: Any, g: Any) -> Any:
        """``-H⁺ g`` after a symmetric (Jacobi) scaling to a unit diagonal.

        The pseudo-inverse drops the multinomial intercepts' free common shift (a zero eigenvalue). The scaling
        and a cut at rounding level (not 1e-12) keep every real direction: columns with a large offset and no
        intercept make the Hessian's condition 1e12 or more, and a coarser cut left those runs unconverged."""
        if self.torch is None:
            dsc = 1.0 / np.sqrt(np.where(np.diag(H) > 0, np.diag(H), 1.0))
            return -dsc * (np.linalg.pinv(dsc[:, None] * H * dsc[None, :], rcond=_PINV_RTOL, hermitian=True)
                           @ (dsc * g))
        diag = self.torch.diagonal(H)
        dsc = 1.0 / self.torch.sqrt(self.torch.where(diag > 0, diag, self.torch.ones_like(diag)))
        Hs = dsc[:, None] * H * dsc[None, :]
        return -dsc * (self.torch.linalg.pinv(Hs, rtol=_PINV_RTOL, hermitian=True) @ (dsc * g))


def _newton(ops: _Ops, A: Any, Y: Any, C: float, penal: Any, max_iter: int, W0: Any = None) -> Any:
    """Damped Newton (Armijo backtracking) on ``C * sum(loss) + ||penal * W||² / 2`` from ``W0`` (zero by
    default), until no descent is left at working precision or ``max_iter`` steps; ``Y`` is one-hot, one
    column for the binary case (sigmoid) or K columns (softmax)."""
    n, p = A.shape
    K = Y.shape[1]
    binary = K == 1
    W = ops.zeros(p, K) if W0 is None else W0
    reg = penal**2

    def objective(W: Any) -> float:
        Z = A @ W
        loss = ops.softplus(Z[:, 0]) - Y[:, 0] * Z[:, 0] if binary else ops.logsumexp(Z) - (Y * Z).sum(1)
        return float(C * loss.sum() + 0.5 * (reg[:, None] * W * W).sum())

    f = objective(W)
    last: tuple[Any, float] | None = None  # (W, its gradient) before a step Armijo could not judge
    for _ in range(max_iter):
        P = ops.sigmoid(A @ W) if binary else ops.softmax(A @ W)
        G = C * (A.T @ (P - Y)) + reg[:, None] * W
        gmax = float(abs(G).max())
        if last is not None and gmax >= last[1]:  # a full step no longer helps: the rounding floor
            W = last[0]
            break
        if gmax <= _GRAD_TOL * C * n:
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
        step_flat = ops.newton_step(H, g)
        slope = float((g * step_flat).sum())
        step = step_flat.reshape(K, p).T
        if -slope <= 1e-12 * abs(f):
            # The decrease Newton predicts is near the objective's rounding, where Armijo cannot judge a step;
            # this close to the optimum the full step is safe, and the gradient says when to stop.
            last = (W, gmax)
            W = W + step
            f = objective(W)
            continue
        last = None
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
    check_magnitude("X", X)
    xm, Xc = centre(X) if fit_intercept else (np.zeros(d), X)
    # Without an intercept, solve in a rotated feature basis (the penalty does not see a rotation).
    R, design = (None, Xc) if fit_intercept else _rotated(X)
    p = d + int(fit_intercept)
    newton = p * K <= MAX_NEWTON_PARAMS
    if not newton and backend != "sklearn":
        # A limit of this backend, not an outcome of the job: another backend may run it.
        raise BackendUnavailable(backend, f"{p * K} parameters exceed the Newton limit {MAX_NEWTON_PARAMS}; "
                                          "use sklearn")
    A = _design(design, fit_intercept)
    Y = ((y[:, None] == classes[None, 1:]) if binary else (y[:, None] == classes[None, :])).astype(np.float64)
    penal = np.concatenate([np.ones(d), np.zeros(int(fit_intercept))])
    if backend == "sklearn":
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings():
            # It falls back to lbfgs (and says so) on an ill-conditioned Hessian: the polish below finishes.
            warnings.simplefilter("ignore")
            est = LogisticRegression(C=C, fit_intercept=fit_intercept, max_iter=max_iter, tol=1e-10,
                                     solver="newton-cholesky").fit(design, y)
        W = np.vstack([np.asarray(est.coef_, dtype=np.float64).T,
                       np.asarray(est.intercept_, dtype=np.float64)[None, :K]][: 1 + int(fit_intercept)])
        if newton:
            # Its own stopping rule (and its lbfgs fallback) ends short of the rounding floor, where the
            # other backends end: finish with the same Newton steps.
            W = _newton(_Ops(), A, Y, C, penal, POLISH_STEPS, W)
    elif backend == "numpy":
        W = _newton(_Ops(), A, Y, C, penal, max_iter + POLISH_STEPS)
    else:
        torch, device = torch_for(backend)

        def t(a: np.ndarray) -> Any:
            return as_tensor(torch, a, device)

        W = _newton(_Ops(torch, device), t(A), t(Y), C, t(penal), max_iter + POLISH_STEPS).cpu().numpy()
    coef = np.ascontiguousarray((W[:d] if R is None else R @ W[:d]).T)
    intercept = W[d] if fit_intercept else np.zeros(K)
    if not binary:
        intercept = intercept - intercept.mean()
    coef = np.asarray(coef, dtype=np.float64)
    grad, grad_b = optimality(Xc, np.searchsorted(classes, y), coef, intercept, C)
    if max(grad, grad_b if fit_intercept else 0.0) > OPTIMAL:
        # Where a solver stands after max_iter steps is its own business (line searches differ) and nothing
        # can certify it: refuse, the same way on every backend, rather than report a point that is not the
        # answer.
        raise ExecutionError(f"max_iter={max_iter} steps and {POLISH_STEPS} more Newton steps left the gradient "
                             f"at {max(grad, grad_b):.1e} (optimal is below {OPTIMAL:g})", "not_converged")
    return _fields(Xc, xm, y, classes, coef, np.asarray(intercept, dtype=np.float64))


def _rotated(X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """A Householder reflection R taking the column means onto the first axis, and X R, built as
    Xc R + 1 (R xm)^T so that nothing cancels: one column carries the offset, the others are centred.

    Without an intercept, columns that share a large offset are nearly parallel; the Hessian X^T D X formed from
    them loses the small curvature entirely (its scaled condition reached 1e17 for features 1e6 ± 1, and Newton
    stalled 10% above the optimal objective). A rotation changes nothing of the problem, since the penalty
    ||W||² is rotation-invariant: W = R W'."""
    xm, Xc = centre(X)
    size = float(np.sqrt(xm @ xm))
    if size == 0.0 or X.shape[1] == 1:
        return None, X
    v = xm.copy()
    v[0] += np.copysign(size, xm[0])  # the stable choice: no cancellation in v
    R = np.eye(X.shape[1]) - (2.0 / float(v @ v)) * np.outer(v, v)
    rotated = Xc @ R
    rotated[:, 0] += -np.copysign(size, xm[0])  # R xm = -sign(xm_0) |xm| e_1
    return R, rotated


def optimality(Xc: np.ndarray, idx: np.ndarray, coef: np.ndarray, intercept_c: np.ndarray,
               C: float) -> tuple[float, float]:
    """How far ``(coef, intercept_c)`` is from the optimum: the largest gradient entry for the coefficients
    (relative to ``C n max|x|``) and for the intercepts (relative to ``C n``). In centred coordinates: the same
    conditions (the intercept absorbs the shift), without the cancellation a large offset brings."""
    K, n = coef.shape[0], Xc.shape[0]
    onehot = (idx == 1).astype(np.float64)[:, None] if K == 1 else (idx[:, None] == np.arange(K)[None, :])
    R = probabilities(_scores(Xc, coef, intercept_c)) - onehot
    grad_w = C * (R.T @ Xc) + coef
    scale = C * n * max(1.0, float(np.abs(Xc).max(initial=0.0)))
    return float(np.abs(grad_w).max(initial=0.0)) / scale, float(np.abs(C * R.sum(axis=0)).max()) / (C * n)


def _scores(Xc: np.ndarray, coef: np.ndarray, intercept_c: np.ndarray) -> np.ndarray:
    return Xc @ coef.T + intercept_c


def probabilities(Z: np.ndarray) -> np.ndarray:
    """Class probabilities from scores: one column (class 1 of 2) for the binary model, else one per class;
    stable for any magnitude (no overflow, no warning)."""
    if Z.shape[1] == 1:
        return np.exp(-np.logaddexp(0.0, -Z))
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def probe_rows(n: int, per_row: int) -> np.ndarray:
    """The rows whose probabilities the summary holds (a function of n and the class count alone)."""
    count = max(1, MAX_PROBE_VALUES // per_row)
    if n <= count:
        return np.arange(n)
    return np.sort(np.random.default_rng([PROBE_SEED, n]).choice(n, count, replace=False))


def _fields(Xc: np.ndarray, xm: np.ndarray, y: np.ndarray, classes: np.ndarray, coef: np.ndarray,
            intercept_c: np.ndarray) -> Fields:
    Z = _scores(Xc, coef, intercept_c)
    idx = np.searchsorted(classes, y)
    if coef.shape[0] == 1:
        pred = (Z[:, 0] > 0).astype(int)
        yb = (idx == 1).astype(np.float64)
        loss = float(np.mean(np.logaddexp(0.0, Z[:, 0]) - yb * Z[:, 0]))
        p1 = probabilities(Z)[:, 0]
        p_true = np.where(idx == 1, p1, 1.0 - p1)
    else:
        pred = Z.argmax(axis=1)
        loss = float(np.mean(_np_logsumexp(Z) - Z[np.arange(len(y)), idx]))
        p_true = probabilities(Z)[np.arange(len(y)), idx]
    return {
        "coef": coef,
        # The model in the data's own coordinates (for display and use) and centred (what the summary reads).
        "intercept": intercept_c - coef @ xm,
        "intercept_centred": intercept_c,
        "probe_design": np.ascontiguousarray(Xc[probe_rows(len(y), coef.shape[0])]),
        "classes": classes.astype(np.float64),
        "accuracy": float(np.mean(pred == idx)),
        "log_loss": loss,
        "mean_true_probability": float(np.mean(p_true)),
    }


def summarise(f: Fields, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    coef, intercept = np.asarray(f["coef"], dtype=np.float64), np.asarray(f["intercept"], dtype=np.float64)
    Z = _scores(np.asarray(f["probe_design"], dtype=np.float64), coef, np.asarray(f["intercept_centred"]))
    probs = probabilities(Z).ravel()[:MAX_PROBE_VALUES]
    summary = np.concatenate([[f["log_loss"], f["mean_true_probability"]], probs,
                              sketch([np.asarray(f[k]) for k in SKETCHED], seed)])
    return summary, {
        "coef": coef.tolist(), "intercept": intercept.tolist(), "accuracy": f["accuracy"], "log_loss": f["log_loss"],
        "mean_true_probability": f["mean_true_probability"],
    }


def certify(X: np.ndarray, y: np.ndarray | None, params: Mapping[str, Any], f: Fields) -> list[Check]:
    """How far the claim's probabilities can be from the optimum's: one Newton step from the claim, read in score
    space, plus the gradient, the intercept gauge, and the reported metrics and probe rows reproduced.

    A small gradient alone is not enough: the objective is strongly convex only with modulus 1 (the penalty), so a
    gradient of 1e-8 · C n max|x| can leave the coefficients 1e-4 away. The Newton step ``δ = -H⁺ g`` measures the
    distance in the problem's own conditioning; the logistic loss is generalised self-concordant (Bach 2010), so
    where the step moves every row's scores by at most ``t`` ≪ 1 the Hessian changes by a factor within
    ``e^{±2t}`` along it and the optimum is within twice the step. Every probability then moves by at most
    ``t`` (softmax's Jacobian rows sum to at most 1/2 in absolute value), the mean log-loss by at most ``2t``.
    Cost: the Hessian once, O(n (dK)²) and a (dK)³ pseudo-inverse, against the fit's many such steps with line
    searches. Past MAX_NEWTON_PARAMS parameters: ``NotCertifiable``."""
    classes = classes_of(y)
    assert y is not None
    coef, intercept = np.asarray(f["coef"], dtype=np.float64), np.asarray(f["intercept"], dtype=np.float64)
    K = 1 if classes.size == 2 else classes.size
    if coef.shape != (K, X.shape[1]) or intercept.shape != (K,):
        return [Check("shapes", float("inf"), 0.0)]
    intercept_c = np.asarray(f["intercept_centred"], dtype=np.float64)
    if intercept_c.shape != (K,):
        return [Check("shapes", float("inf"), 0.0)]
    claimed = np.asarray(f["classes"], dtype=np.float64)
    if claimed.shape != classes.shape or not np.array_equal(claimed, classes.astype(np.float64)):
        return [Check("classes_mismatch", float("inf"), 0.0)]  # the summary's sketch reads them
    C = float(params["C"])
    fit_intercept = bool(params["fit_intercept"])
    xm, Xc = centre(X) if fit_intercept else (np.zeros(X.shape[1]), X)
    idx = np.searchsorted(classes, y)
    grad, grad_b = optimality(Xc, idx, coef, intercept_c, C)
    checks = [Check("gradient", grad, OPTIMAL)]
    if fit_intercept:
        checks.append(Check("intercept_gradient", grad_b, OPTIMAL))
        size = float(np.abs(intercept_c).max()) + float(np.abs(coef).max()) * float(np.abs(xm).sum())
        gap = float(np.abs(intercept - (intercept_c - coef @ xm)).max()) / max(size, 1e-300)
        checks.append(Check("intercept_mismatch", gap, 1e-12))
    else:
        checks.append(Check("intercept_is_zero", float(np.abs(intercept).max() + np.abs(intercept_c).max()), 0.0))
    if K > 1:
        checks.append(Check("intercept_gauge", abs(float(intercept_c.sum())), 1e-9))
    expect = _fields(Xc, xm, y, classes, coef, intercept_c)
    checks.append(Check("accuracy_matches", abs(float(f["accuracy"]) - expect["accuracy"]), 0.0))
    for key in ("log_loss", "mean_true_probability"):
        checks.append(Check(f"{key}_matches", abs(float(f[key]) - expect[key]), 1e-9))
    probe, want = np.asarray(f["probe_design"], dtype=np.float64), expect["probe_design"]
    gap = float(np.abs(probe - want).max(initial=0.0)) / max(float(np.abs(want).max(initial=0.0)), 1e-300) \
        if probe.shape == want.shape else float("inf")
    checks.append(Check("probe_rows_mismatch", gap, 1e-12))
    if not all(c.ok for c in checks):
        return checks
    p = X.shape[1] + int(fit_intercept)
    if p * K > MAX_NEWTON_PARAMS:
        raise NotCertifiable(f"{p * K} parameters exceed the Newton limit {MAX_NEWTON_PARAMS}")
    checks.append(Check("probability_error_bound", 4.0 * _newton_score_change(X, idx, coef, intercept_c, C,
                                                                              fit_intercept), SUMMARY_SLACK))
    return checks


# A certified result's probabilities and mean log-loss are within this of the optimum's: a sixth of the default
# tolerance (3 units at 5 digits).
SUMMARY_SLACK = 5e-6


def _newton_score_change(X: np.ndarray, idx: np.ndarray, coef: np.ndarray, intercept_c: np.ndarray, C: float,
                         fit_intercept: bool) -> float:
    """The largest change of any row's scores under one Newton step from the claim, on the coordinates the fit
    itself uses (centred with an intercept, rotated without one, where the Hessian is well conditioned)."""
    K, d = coef.shape
    if fit_intercept:
        _, design = centre(X)
        W = np.vstack([coef.T, intercept_c[None, :]])
    else:
        R, design = _rotated(X)
        W = coef.T if R is None else R.T @ coef.T  # W = R W' (R orthogonal)
    A = _design(design, fit_intercept)
    Y = (idx == 1).astype(np.float64)[:, None] if K == 1 else (idx[:, None] == np.arange(K)[None, :]).astype(float)
    penal = np.concatenate([np.ones(d), np.zeros(int(fit_intercept))])
    reg = penal**2
    Z = A @ W
    P = probabilities(Z)
    G = C * (A.T @ (P - Y)) + reg[:, None] * W
    p = A.shape[1]
    H = np.zeros((p * K, p * K))
    for a in range(K):
        for b in range(a, K):
            w = P[:, 0] * (1.0 - P[:, 0]) if K == 1 else P[:, a] * ((1.0 if a == b else 0.0) - P[:, b])
            block = C * (A.T @ (A * w[:, None]))
            if a == b:
                block = block + np.diag(reg)
            H[a * p : (a + 1) * p, b * p : (b + 1) * p] = block
            H[b * p : (b + 1) * p, a * p : (a + 1) * p] = block.T
    step = _Ops().newton_step(H, G.T.reshape(-1)).reshape(K, p).T
    dz = A @ step
    if K > 1:  # the common shift of all scores (the intercepts' gauge) changes no probability
        dz = dz - dz.mean(axis=1, keepdims=True)
    return float(np.abs(dz).max(initial=0.0))


MODEL = ModelDef("logistic_regression", ("numpy", "sklearn", "torch-cpu", "torch-cuda"), "labels", fit, summarise,
                 certify)
