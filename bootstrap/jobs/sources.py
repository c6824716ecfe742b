"""Where a job's dataset comes from: a seeded generator, CSV text, inline rows, or a digest already on the
network; :func:`build_dataset` turns a source into a checked ``compute`` Dataset."""

from __future__ import annotations

from dataclasses import dataclass

from bootstrap.errors import NodeError
from compute import Dataset, dataset_from_csv, make_dataset, synthetic


@dataclass(frozen=True)
class SyntheticSource:
    """A seeded generator from ``compute.synthetic`` (bit-identical everywhere)."""

    kind: str = "regression"
    n_samples: int = 200
    n_features: int = 4
    seed: int = 0
    n_classes: int = 3
    noise: float = 0.1


@dataclass(frozen=True)
class CsvSource:
    """CSV text; ``target_column`` (index or header name) becomes y."""

    data: bytes
    target_column: int | str | None = None


@dataclass(frozen=True)
class InlineSource:
    """Rows given directly (JSON bodies): X as a list of rows, optional y."""

    X: list[list[float]]
    y: list[float] | None = None


@dataclass(frozen=True)
class DigestSource:
    """A dataset already in this node's blob store (or fetchable from peers) by its digest."""

    digest: bytes


DatasetSource = SyntheticSource | CsvSource | InlineSource | DigestSource

_DEFAULT_KIND = {"kmeans": "blobs", "pca": "blobs", "logistic_regression": "classification",
                 "mlp_train": "classification"}


def default_dataset(model: str, seed: int = 0) -> SyntheticSource:
    """What the seed did without a dataset: a small synthetic one suited to the model."""
    return SyntheticSource(kind=_DEFAULT_KIND.get(model, "regression"), n_samples=200, n_features=4, seed=seed)


def build_dataset(source: DatasetSource) -> Dataset | bytes:
    """A Dataset from a source (compute errors pass through typed); a DigestSource gives the digest only."""
    if isinstance(source, SyntheticSource):
        return synthetic(source.kind, source.n_samples, source.n_features, source.seed,
                         n_classes=source.n_classes, noise=source.noise)
    if isinstance(source, CsvSource):
        return dataset_from_csv(source.data, source.target_column)
    if isinstance(source, InlineSource):
        import numpy as np

        try:
            X = np.asarray(source.X, dtype=np.float64)
            y = None if source.y is None else np.asarray(source.y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            from compute.errors import DatasetError

            raise DatasetError(f"inline data is not a numeric matrix: {exc}") from None
        return make_dataset(X, y)
    if isinstance(source, DigestSource):
        return source.digest
    raise NodeError(f"unknown dataset source {type(source).__name__}")
