"""A finished job's result as chart-ready points: k-means clusters and PCA projections as scatter plots, a
regression's fit, a classifier's predicted classes, an MLP's loss curve. Computed on the node from the job's
dataset and accepted artifact, so the page only draws."""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_PLOT_POINTS = 1500


def _sample(n: int, limit: int = MAX_PLOT_POINTS) -> np.ndarray:
    """Evenly spaced row indexes, at most ``limit`` (deterministic, so two views of a job agree)."""
    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(np.int64)


def _project2(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D view of X for drawing only: the data itself when it has ≤ 2 columns, else its top two principal
    directions. Returns (mean, basis 2×d, projected points)."""
    d = X.shape[1]
    mean = X.mean(axis=0)
    if d == 1:
        basis = np.array([[1.0], [0.0]])
    elif d == 2:
        basis = np.eye(2)
    else:
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        basis = vt[:2]
    if d <= 2:
        mean = np.zeros(d)
    return mean, basis, (X - mean) @ basis.T


def _pts(*cols: np.ndarray) -> list[list[float]]:
    return np.round(np.column_stack(cols).astype(np.float64), 6).tolist()


def plot_data(model: str, X: np.ndarray, y: np.ndarray | None, fields: dict[str, Any]) -> dict[str, Any]:
    """Chart-ready data for one finished job; ``charts`` is a list of ``scatter``/``line``/``bars`` dicts."""
    idx = _sample(X.shape[0])
    Xs = X[idx]
    charts: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    if model == "kmeans":
        centres = np.asarray(fields["centres"], dtype=np.float64)
        labels = np.asarray(fields["labels"]).reshape(-1)
        mean, basis, P = _project2(Xs)
        C = (centres - mean) @ basis.T
        charts.append({"kind": "scatter", "title": "k-means clusters", "x_label": "axis 1", "y_label": "axis 2",
                       "points": _pts(P[:, 0], P[:, 1], labels[idx] if labels.size == X.shape[0] else
                                      np.zeros(len(idx))), "centres": _pts(C[:, 0], C[:, 1])})
        metrics = {"k": int(centres.shape[0]), "inertia": float(fields["inertia"]), "n_iter": int(fields["n_iter"])}
    elif model == "pca":
        comps = np.asarray(fields["components"], dtype=np.float64)
        mean = np.asarray(fields["mean"], dtype=np.float64)
        P = (Xs - mean) @ comps[:2].T
        second = P[:, 1] if P.shape[1] > 1 else np.zeros(len(idx))
        groups = y[idx] if y is not None and np.unique(y).size <= 12 else np.zeros(len(idx))
        charts.append({"kind": "scatter", "title": "PCA projection", "x_label": "PC1",
                       "y_label": "PC2" if P.shape[1] > 1 else "", "points": _pts(P[:, 0], second, groups)})
        ratio = [float(r) for r in fields["explained_variance_ratio"]]
        charts.append({"kind": "bars", "title": "explained variance ratio",
                       "labels": [f"PC{i + 1}" for i in range(len(ratio))], "values": ratio})
        metrics = {"explained_variance_ratio": ratio}
    elif model == "linear_regression" and y is not None:
        coef = np.asarray(fields["coef"], dtype=np.float64).reshape(-1)
        b = float(fields["intercept"])
        pred = Xs @ coef + b
        if X.shape[1] == 1:
            lo, hi = float(Xs[:, 0].min()), float(Xs[:, 0].max())
            charts.append({"kind": "scatter", "title": "regression fit", "x_label": "x", "y_label": "y",
                           "points": _pts(Xs[:, 0], y[idx], np.zeros(len(idx))),
                           "line": [[lo, lo * coef[0] + b], [hi, hi * coef[0] + b]]})
        else:
            lo, hi = float(min(y[idx].min(), pred.min())), float(max(y[idx].max(), pred.max()))
            charts.append({"kind": "scatter", "title": "regression fit: predicted vs actual", "x_label": "actual y",
                           "y_label": "predicted y", "points": _pts(y[idx], pred, np.zeros(len(idx))),
                           "line": [[lo, lo], [hi, hi]]})
        metrics = {"r2": float(fields["r2"]), "mse": float(fields["mse"])}
    elif model == "logistic_regression":
        coef = np.atleast_2d(np.asarray(fields["coef"], dtype=np.float64))
        icpt = np.asarray(fields["intercept"], dtype=np.float64).reshape(-1)
        Z = Xs @ coef.T + icpt
        pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else Z.argmax(axis=1)
        _, _, P = _project2(Xs)
        charts.append({"kind": "scatter", "title": "predicted classes", "x_label": "axis 1", "y_label": "axis 2",
                       "points": _pts(P[:, 0], P[:, 1], pred)})
        metrics = {"accuracy": float(fields["accuracy"]), "log_loss": float(fields["log_loss"])}
    elif model == "mlp_train":
        curve = np.asarray(fields["loss_curve"], dtype=np.float64).reshape(-1)
        charts.append({"kind": "line", "title": "training loss", "x_label": "epoch", "y_label": "loss",
                       "points": _pts(np.arange(1, curve.size + 1), curve)})
        metrics = {k: float(fields[k]) for k in ("train_loss", "test_loss", "test_accuracy") if k in fields}
    return {"model": model, "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
            "shown": len(idx), "charts": charts, "metrics": metrics}
