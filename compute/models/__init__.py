"""The model table: each model says which backends run it, what target it needs, how it fits, how its output
is made canonical and summarised, and how a claimed output is certified without re-running it. The definitions
every model module uses are in ``base``."""

from __future__ import annotations

from compute.models.base import BACKENDS, Check, Fields, ModelDef

__all__ = ["BACKENDS", "Check", "Fields", "ModelDef", "get_model"]


def get_model(name: str) -> ModelDef:
    """The definition of a model named in a (validated) spec."""
    from compute.models import kmeans, linear, logistic, mlp, pca

    table = {m.MODEL.name: m.MODEL for m in (linear, kmeans, pca, logistic, mlp)}
    return table[name]
