"""Datasets: .npy and CSV ingestion, refusal of bad data with reasons, digests, seeded generators."""

import io
import subprocess
import sys

import numpy as np
import pytest

from compute.dataset import (
    DatasetLimits,
    dataset_from_csv,
    dataset_from_npy,
    decode_dataset,
    encode_dataset,
    make_dataset,
    synthetic,
)
from compute.errors import ComputeError, DatasetError


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_npy_round_trip_and_digest_names_content() -> None:
    X = np.arange(12, dtype=np.int32).reshape(4, 3)
    y = np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32)
    ds = dataset_from_npy(npy(X), npy(y))
    assert ds.X.dtype == np.float64 and ds.X.shape == (4, 3) and not ds.X.flags.writeable
    assert np.array_equal(ds.X, X) and np.array_equal(ds.y, y)
    again = decode_dataset(encode_dataset(ds), expected_digest=ds.digest)
    assert again.digest == ds.digest and np.array_equal(again.X, ds.X) and np.array_equal(again.y, ds.y)
    assert dataset_from_npy(npy(X + 1), npy(y)).digest != ds.digest
    assert dataset_from_npy(npy(X)).digest != ds.digest  # y is part of the content


@pytest.mark.parametrize(
    ("X", "reason"),
    [
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "NaN or infinity"),
        (np.arange(3.0), "2-D"),
        (np.zeros((0, 3)), "at least one row"),
        (np.array([[1 + 2j]]), "dtype"),
        (np.array([["a", "b"]]), "dtype"),
        (np.array([[True, False]]), "dtype"),
    ],
)
def test_bad_arrays_are_refused_with_reason(X: np.ndarray, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason):
        make_dataset(X)


def test_npy_object_arrays_wrong_y_and_size_limits() -> None:
    with pytest.raises(DatasetError, match=r"plain \.npy"):
        dataset_from_npy(npy(np.array([[object()]], dtype=object)))
    with pytest.raises(DatasetError, match=r"not .*npy"):
        dataset_from_npy(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match="y must be 1-D with 3"):
        make_dataset(np.zeros((3, 2)), np.zeros(4))
    small = DatasetLimits(max_bytes=1000, max_rows=30, max_features=4)
    with pytest.raises(DatasetError, match="rows"):
        make_dataset(np.zeros((31, 2)), limits=small)
    with pytest.raises(DatasetError, match="features"):
        make_dataset(np.zeros((2, 5)), limits=small)
    with pytest.raises(DatasetError, match="limit is 1000"):
        make_dataset(np.zeros((30, 4)), np.zeros(30), limits=small)
    assert issubclass(DatasetError, ComputeError)


def test_decode_refuses_tampering() -> None:
    ds = synthetic("regression", 20, 3, seed=1)
    data = encode_dataset(ds)
    with pytest.raises(DatasetError, match="digest mismatch"):
        decode_dataset(data, expected_digest=bytes(32))
    with pytest.raises(DatasetError):
        decode_dataset(data[:-8])
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    assert decode_dataset(bytes(flipped)).digest != ds.digest
    nan = bytearray(data)
    nan[-8:] = np.array([np.nan]).tobytes()
    with pytest.raises(DatasetError, match="NaN"):
        decode_dataset(bytes(nan))


def test_csv_with_header_and_named_target() -> None:
    text = b"a,b,target\n1,2,3\n4,5,6\n7,8.5,9\n"
    ds = dataset_from_csv(text, target_column="target")
    assert ds.X.tolist() == [[1, 2], [4, 5], [7, 8.5]] and ds.y.tolist() == [3, 6, 9]
    by_index = dataset_from_csv(text, target_column=-1)
    assert by_index.digest == ds.digest
    headless = dataset_from_csv(b"1,2\n3,4\n")
    assert headless.y is None and headless.X.shape == (2, 2)


@pytest.mark.parametrize(
    ("text", "kwargs", "reason"),
    [
        (b"a,b\n1,2\n3\n", {}, "row 2 has 1 cells"),
        (b"a,b\n1,x\n", {}, "column 2: 'x' is not a number"),
        (b"a,b\n1,nan\n", {}, "NaN"),
        (b"", {}, "no rows"),
        (b"a,b\n", {}, "no data rows"),
        (b"a,b\n1,2\n", {"target_column": "c"}, "not found"),
        (b"a,b\n1,2\n", {"target_column": 5}, "out of range"),
        (b"\xff\xfe\x00", {}, "UTF-8"),
    ],
)
def test_bad_csv_is_refused_with_reason(text: bytes, kwargs: dict, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason):
        dataset_from_csv(text, **kwargs)


def test_csv_size_bound() -> None:
    with pytest.raises(DatasetError, match="limit"):
        dataset_from_csv(b"1,2\n" * 100, limits=DatasetLimits(max_csv_bytes=50))


@pytest.mark.parametrize("kind", ["regression", "blobs", "classification"])
def test_synthetic_is_seeded_and_labelled(kind: str) -> None:
    a = synthetic(kind, 300, 4, seed=7, n_classes=3)
    b = synthetic(kind, 300, 4, seed=7, n_classes=3)
    c = synthetic(kind, 300, 4, seed=8, n_classes=3)
    assert a.digest == b.digest != c.digest
    assert a.y is not None
    if kind != "regression":
        assert set(np.unique(a.y)) <= {0.0, 1.0, 2.0} and len(np.unique(a.y)) >= 2
    with pytest.raises(DatasetError, match="unknown synthetic"):
        synthetic("moons", 10, 2, seed=0)


def test_synthetic_digest_is_independent_of_blas_threads() -> None:
    # Another process with a different BLAS thread count must produce the same bytes.
    code = (
        "from compute.dataset import synthetic;"
        "print(synthetic('regression', 500, 30, seed=3).digest.hex(), synthetic('classification', 500, 30, seed=3,"
        " n_classes=4).digest.hex())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t),
                 "PATH": "/usr/bin:/bin", "PYTHONPATH": "."},
        ).stdout.split()[0]
        for t in (1, 2)
    }
    assert outs == {synthetic("regression", 500, 30, seed=3).digest.hex()}
