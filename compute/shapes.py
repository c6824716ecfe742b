"""What a spec will make of a dataset of a given shape, known before anything runs: how long its result summary
is, and the shape problems that would make every run of it fail.

A client checks both before submitting (``bootstrap.jobs.desk``): a job whose spec fails on its data, or whose
summary is longer than the chain lets a reveal carry, costs the client its fee and the workers their time for
nothing. The lengths mirror each model's ``summarise`` (``compute.models``); ``tests/compute/test_shapes.py``
checks them against real runs of every model.
"""

from __future__ import annotations

import numpy as np

from compute.dataset import Dataset
from compute.errors import DatasetError, SpecError
from compute.models.mlp import MAX_CURVE_POINTS
from compute.spec import JobSpec

_LABEL_MODELS = ("logistic_regression", "mlp_train")
_TARGET_MODELS = ("linear_regression", *_LABEL_MODELS)


def n_classes_of(y: np.ndarray | None) -> int:
    """How many distinct labels ``y`` holds (0 without a target)."""
    return 0 if y is None else int(np.unique(y).size)


def summary_len(spec: JobSpec, n_rows: int, n_features: int, n_classes: int) -> int:
    """How many integers the result summary of ``spec`` on a dataset of this shape holds (``n_classes``: distinct
    labels in ``y``, for the classifiers)."""
    p, d = spec.params, n_features
    if spec.model == "linear_regression":
        return d + 2  # coefficients, intercept, r²
    if spec.model == "kmeans":
        return int(p["k"]) * d + 1  # centres, inertia
    if spec.model == "pca":
        return int(p["n_components"]) * (d + 2)  # components, explained variance and its ratio
    if spec.model == "logistic_regression":
        rows = 1 if n_classes == 2 else n_classes  # binary: one row of coefficients
        return rows * d + rows + 2  # coefficients, intercepts, accuracy, log loss
    if spec.model == "mlp_train":
        layers = len(p["hidden"]) + 1
        curve = min(int(p["epochs"]), MAX_CURVE_POINTS)
        return curve + 3 + 2 * 2 * layers  # loss curve, three metrics, sum and norm of each weight and bias
    raise SpecError("model", f"no summary layout for {spec.model!r}")


def check_shape(spec: JobSpec, dataset: Dataset, max_summary_len: int | None = None) -> None:
    """Raise the error every run of ``spec`` on ``dataset`` would raise because of the data's shape (too few rows
    for ``k`` or the components, a missing target, a single class), or :class:`SpecError` on ``summary`` when the
    summary would be longer than ``max_summary_len``."""
    n, d = dataset.X.shape
    p = spec.params
    if spec.model in _TARGET_MODELS and dataset.y is None:
        raise DatasetError(f"{spec.model} needs a target column y")
    classes = n_classes_of(dataset.y)
    if spec.model in _LABEL_MODELS:
        assert dataset.y is not None
        if not np.array_equal(dataset.y, np.round(dataset.y)):
            raise DatasetError("y must hold integer class labels")
        if classes < 2:
            raise DatasetError(f"y must contain at least two classes, found {classes}")
    if spec.model == "kmeans" and int(p["k"]) > n:
        raise SpecError("params.k", f"k={p['k']} exceeds the dataset's {n} samples")
    if spec.model == "pca" and int(p["n_components"]) > min(n - 1, d):
        raise SpecError("params.n_components",
                        f"{p['n_components']} exceeds min(n_samples - 1, n_features) = {min(n - 1, d)}")
    if spec.model == "mlp_train" and n - max(1, round(float(p["test_fraction"]) * n)) < 1:
        raise DatasetError(f"{n} samples leave nothing to train on with test_fraction={p['test_fraction']}")
    if max_summary_len is not None:
        length = summary_len(spec, n, d, classes)
        if length > max_summary_len:
            raise SpecError("summary", f"this job's result summary would hold {length} values; the chain's "
                                       f"reveals carry at most {max_summary_len} (max_summary_len)")
