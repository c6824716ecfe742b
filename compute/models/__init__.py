"""The model table: each model says which backends run it, what target it needs, how it fits, how its output
is made canonical and summarised, and how a claimed output is certified without re-running it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from compute.canonical import ArtifactValue

BACKENDS = ("numpy", "sklearn", "torch-cpu", "torch-cuda")

Fields = dict[str, ArtifactValue]


@dataclass(frozen=True)
class Check:
    """One certificate check: its measured value against the threshold it must not exceed."""

    name: str
    value: float
    threshold: float

    @property
    def ok(self) -> bool:
        return bool(self.value <= self.threshold)  # NaN fails


@dataclass(frozen=True)
class ModelDef:
    """How one model runs and is checked. ``fit`` returns canonical artifact fields; ``summarise`` turns those
    fields into the summary floats (in order) and a display dict; ``certify`` returns the cheap checks."""

    name: str
    backends: tuple[str, ...]
    target: str  # "none", "real" or "labels"
    fit: Callable[[str, np.ndarray, np.ndarray | None, Mapping[str, Any]], Fields]
    summarise: Callable[[Fields], tuple[np.ndarray, dict[str, Any]]]
    certify: Callable[[np.ndarray, np.ndarray | None, Mapping[str, Any], Fields], list[Check]]


def get_model(name: str) -> ModelDef:
    """The definition of a model named in a (validated) spec."""
    from compute.models import kmeans, linear, logistic, mlp, pca

    table = {m.MODEL.name: m.MODEL for m in (linear, kmeans, pca, logistic, mlp)}
    return table[name]
