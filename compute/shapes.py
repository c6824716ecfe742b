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
from compute.models.base import SKETCH_WIDTH
from compute.models.kmeans import SKETCHED as KMEANS_SKETCHED
from compute.models.linear import SKETCHED as LINEAR_SKETCHED
from compute.models.linear import probe_rows as linear_probe_rows
from compute.models.logistic import MAX_PROBE_VALUES as LOGISTIC_MAX_PROBE_VALUES
from compute.models.logistic import SKETCHED as LOGISTIC_SKETCHED
from compute.models.logistic import probe_rows as logistic_probe_rows
from compute.models.mlp import MAX_CURVE_POINTS
from compute.models.pca import SKETCH_LEN as PCA_SKETCH_LEN
from compute.models.pca import summary_shape as pca_summary_shape
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
        # R², fitted values at the probe rows, the sketch
        return 1 + len(linear_probe_rows(n_rows)) + SKETCH_WIDTH * len(LINEAR_SKETCHED)
    if spec.model == "kmeans":
        return int(p["k"]) * d + 1 + SKETCH_WIDTH * len(KMEANS_SKETCHED)  # centres, sqrt(inertia / n), sketch
    if spec.model == "pca":
        groups, probes = pca_summary_shape(int(p["n_components"]))
        # log total variance; per slot run its share and probe readings; the sketch
        return 1 + len(groups) * (1 + probes) + PCA_SKETCH_LEN
    if spec.model == "logistic_regression":
        per_row = 1 if n_classes == 2 else n_classes  # binary: one probability per row
        values = len(logistic_probe_rows(n_rows, per_row)) * per_row
        # log loss, mean true probability, probabilities, the sketch
        return 2 + min(values, LOGISTIC_MAX_PROBE_VALUES) + SKETCH_WIDTH * len(LOGISTIC_SKETCHED)
    if spec.model == "mlp_train":
        layers = len(p["hidden"]) + 1
        curve = min(int(p["epochs"]), MAX_CURVE_POINTS)
        # damping, loss curve, three metrics, sum and norm of each weight and bias, a sketch of each layer, of
        # the standardisation and of the classes
        return 1 + curve + 3 + 2 * 2 * layers + SKETCH_WIDTH * (layers + 2)
    raise SpecError("model", f"no summary layout for {spec.model!r}")


def check_shape(spec: JobSpec, dataset: Dataset, max_summary_len: int | None = None) -> None:
    """Raise the error every run of ``spec`` on ``dataset`` would raise because of the data's shape (too few rows
    for ``k`` or the components, a missing target, a single class), or :class:`SpecError` on ``summary`` when the
    summary would be longer than ``max_summary_len``."""
    n, d = dataset.X.shape
    p = spec.params
    if spec.model in _TARGET_MODELS and dataset.y is None:
        raise DatasetError(f"{spec.model} needs a target column y", "target_missing")
    classes = n_classes_of(dataset.y)
    if spec.model in _LABEL_MODELS:
        assert dataset.y is not None
        if not np.array_equal(dataset.y, np.round(dataset.y)):
            raise DatasetError("y must hold integer class labels", "labels_not_integer")
        if classes < 2:
            raise DatasetError(f"y must contain at least two classes, found {classes}", "too_few_classes")
    if spec.model == "kmeans" and int(p["k"]) > n:
        raise SpecError("params.k", f"k={p['k']} exceeds the dataset's {n} samples")
    if spec.model == "pca" and int(p["n_components"]) > min(n - 1, d):
        raise SpecError("params.n_components",
                        f"{p['n_components']} exceeds min(n_samples - 1, n_features) = {min(n - 1, d)}")
    if spec.model == "mlp_train" and n - max(1, round(float(p["test_fraction"]) * n)) < 1:
        raise DatasetError(f"{n} samples leave nothing to train on with test_fraction={p['test_fraction']}",
                           "nothing_to_train")
    if max_summary_len is not None:
        length = summary_len(spec, n, d, classes)
        if length > max_summary_len:
            raise SpecError("summary", f"this job's result summary would hold {length} values; the chain's "
                                       f"reveals carry at most {max_summary_len} (max_summary_len)")
