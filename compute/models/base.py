"""What every model module declares: the backends, the artifact fields, a certificate check and the model
definition. Apart from the table in ``compute.models`` so a model module imports these without importing the
table that imports it."""

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
