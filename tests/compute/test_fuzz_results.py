"""Fuzzing the decoders of bytes that come from other peers' work: result artifacts (``decode_artifact``; the API
serves them, a worker chose their bytes) and datasets (``decode_dataset``; a client chose them). Both must refuse
bad bytes with their own typed error.

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import strategies as st

from compute.canonical import ARTIFACT_TAG, Artifact, decode_artifact, encode_artifact
from compute.dataset import Dataset, decode_dataset, encode_dataset, synthetic
from compute.errors import DatasetError, ResultError
from tests.fuzzing import Target, target_tests

_arrays = st.one_of(
    st.lists(st.floats(allow_nan=False), min_size=0, max_size=12).map(lambda v: np.array(v, dtype="<f8")),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=12).map(lambda v: np.array(v, dtype="<i8")),
    st.tuples(st.integers(1, 4), st.integers(1, 4)).map(lambda s: np.arange(s[0] * s[1], dtype="<f8").reshape(s)),
)
_fields = st.dictionaries(
    st.text(min_size=1, max_size=10), st.one_of(_arrays, st.integers(-(2**63), 2**63 - 1), st.text(max_size=20),
                                                st.booleans(), st.floats(allow_nan=False)), max_size=4
)
artifacts = st.builds(
    lambda model, fields: encode_artifact(model, bytes(32), bytes(32), fields), st.text(max_size=20), _fields
)
datasets = st.builds(
    lambda kind, n, d, seed: encode_dataset(synthetic(kind, n, d, seed=seed)),
    st.sampled_from(["regression", "blobs"]),
    st.integers(2, 12),
    st.integers(1, 4),
    st.integers(0, 1000),
)


def _check_artifact(a: Artifact, data: bytes) -> None:
    for name, value in a.fields.items():
        assert isinstance(name, str)
        assert isinstance(value, np.ndarray | bool | int | float | str), (name, type(value))
    # What decodes can be encoded again (the API and the dashboard show it).
    encode_artifact(a.model, a.spec_digest, a.dataset_digest, a.fields)


def _check_dataset(ds: Dataset, data: bytes) -> None:
    assert encode_dataset(ds) == data
    assert np.isfinite(ds.X).all()


TARGETS = [
    Target("compute.decode_artifact", decode_artifact, (ResultError,), artifacts, _check_artifact),
    Target("compute.decode_dataset", decode_dataset, (DatasetError,), datasets, _check_dataset),
]


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


# Found by fuzzing: a bad array shape made decode_artifact raise ValueError or numpy's UFuncTypeError (a
# TypeError), and a map or nil field value was accepted although no artifact field can hold one.
@pytest.mark.parametrize(
    "value",
    [
        ["<f8", [-1, -2], bytes(16)],
        ["<f8", ["x"], bytes(8)],
        ["<f8", [True], bytes(8)],
        ["<f8", [2**62, 4], b""],
        ["<f8", [[2]], bytes(16)],
        ["<f8", [1], 5],
        {"a": 1},
        None,
        b"raw",
    ],
)
def test_a_malformed_field_is_a_result_error(value: object) -> None:
    data = msgpack.packb([ARTIFACT_TAG, "pca", bytes(32), bytes(32), [["a", value]]], use_bin_type=True)
    with pytest.raises(ResultError):
        decode_artifact(data)


def test_an_empty_array_still_decodes() -> None:
    data = encode_artifact("pca", bytes(32), bytes(32), {"a": np.zeros((0, 3))})
    assert decode_artifact(data).fields["a"].shape == (0, 3)
