"""Where a job's dataset comes from: a seeded generator, CSV text, inline rows, or a digest already on the
network; :func:`build_dataset` turns a source into a checked ``compute`` Dataset."""

from __future__ import annotations

from dataclasses import dataclass

from bootstrap.errors import NodeError
from compute import Dataset, dataset_from_csv, make_dataset, synthetic
from compute.dataset import dataset_from_npy, load_npy, split_target


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


UPLOAD_FORMATS = ("npy", "npz", "csv")


def upload_format(body: bytes, content_type: str = "") -> str:
    """The format of an uploaded dataset: from its magic bytes (``.npy``, a ``.npz`` zip), else the content type,
    else CSV text."""
    if body[:6] == b"\x93NUMPY":
        return "npy"
    if body[:4] == b"PK\x03\x04":
        return "npz"
    kind = content_type.split(";", 1)[0].strip().lower()
    return {"application/x-npy": "npy", "application/zip": "npz"}.get(kind, "csv")


def dataset_from_upload(body: bytes, fmt: str, target_column: int | str | None = None) -> Dataset:
    """A checked dataset from uploaded bytes (blocking: run it on a worker thread).

    ``npy``: one 2-D array; ``target_column`` (an index) becomes y. ``npz``: arrays ``X`` and optionally ``y``
    (``np.savez``). ``csv``: text, ``target_column`` an index or a header name. Pickled objects are refused and
    every error is a typed ``DatasetError`` naming what is wrong."""
    import io
    import zipfile

    from compute.errors import DatasetError

    if fmt == "csv":
        return dataset_from_csv(body, target_column)
    if fmt == "npz":
        if target_column is not None:
            raise DatasetError("target_column is for .npy and CSV uploads; a .npz names its arrays X and y")
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                names = {n.removesuffix(".npy"): n for n in z.namelist()}
                if "X" not in names or set(names) - {"X", "y"}:
                    raise DatasetError(f"a .npz dataset holds arrays X and optionally y, got {sorted(names)}")
                x_bytes = z.read(names["X"])
                y_bytes = z.read(names["y"]) if "y" in names else None
        except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"not a valid .npz archive: {exc}") from None
        return dataset_from_npy(x_bytes, y_bytes)
    if fmt != "npy":
        raise DatasetError(f"unknown upload format {fmt!r}; expected one of {', '.join(UPLOAD_FORMATS)}")
    if target_column is None:
        return dataset_from_npy(body)
    if isinstance(target_column, str):
        if not target_column.lstrip("-").isdigit():
            raise DatasetError(f"target_column of a .npy upload is a column index, got {target_column!r}")
        target_column = int(target_column)
    return split_target(load_npy("X", body), target_column)
