"""Job specs: validation with typed errors, canonical encoding, stable digests."""

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute.errors import ComputeError, SpecError
from compute.spec import DEFAULT_TOLERANCE, MODELS, JobSpec, Limits, Requirements, Tolerance, make_spec

DIGEST = bytes(range(32))


def test_defaults_are_filled_and_digest_is_stable() -> None:
    a = make_spec("kmeans", {"k": 3}, DIGEST)
    b = make_spec("kmeans", {"k": 3, "iterations": 300, "seed": 0, "init": "k-means++", "n_init": 10}, DIGEST)
    assert a.params == {"init": "k-means++", "iterations": 300, "k": 3, "n_init": 10, "seed": 0}
    assert a.encode() == b.encode() and a.digest == b.digest and len(a.digest) == 32
    assert a.tolerance == DEFAULT_TOLERANCE["kmeans"]
    assert make_spec("kmeans", {"k": 4}, DIGEST).digest != a.digest
    assert make_spec("kmeans", {"k": 3, "n_init": 1}, DIGEST).digest != a.digest
    assert make_spec("kmeans", {"k": 3}, bytes(32)).digest != a.digest


@pytest.mark.parametrize("model", MODELS)
def test_every_model_round_trips(model: str) -> None:
    spec = make_spec(model, {}, DIGEST, device="gpu" if model == "mlp_train" else "any", min_memory_mb=512)
    again = JobSpec.decode(spec.encode())
    assert again == spec and again.digest == spec.digest
    assert again.requirements == Requirements("gpu" if model == "mlp_train" else "any", 512)


def test_float_params_accept_ints_and_encode_canonically() -> None:
    assert make_spec("linear_regression", {"alpha": 1}, DIGEST).digest == make_spec(
        "linear_regression", {"alpha": 1.0}, DIGEST
    ).digest


@pytest.mark.parametrize(
    ("model", "params", "field"),
    [
        ("kmeans", {"k": 0}, "params.k"),
        ("kmeans", {"k": 2.5}, "params.k"),
        ("kmeans", {"k": True}, "params.k"),
        ("kmeans", {"init": "forgy"}, "params.init"),
        ("kmeans", {"n_init": 0}, "params.n_init"),
        ("kmeans", {"clusters": 3}, "params.clusters"),
        ("linear_regression", {"alpha": -1.0}, "params.alpha"),
        ("linear_regression", {"alpha": float("nan")}, "params.alpha"),
        ("linear_regression", {"fit_intercept": 1}, "params.fit_intercept"),
        ("pca", {"n_components": 0}, "params.n_components"),
        ("logistic_regression", {"C": 0.0}, "params.C"),
        ("mlp_train", {"hidden": []}, "params.hidden"),
        ("mlp_train", {"hidden": [8, 0]}, "params.hidden"),
        ("mlp_train", {"hidden": "32"}, "params.hidden"),
        ("mlp_train", {"activation": "gelu"}, "params.activation"),
        ("mlp_train", {"test_fraction": 1.0}, "params.test_fraction"),
    ],
)
def test_bad_params_raise_spec_error_naming_the_field(model: str, params: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        make_spec(model, params, DIGEST)
    assert info.value.field == field
    assert isinstance(info.value, ComputeError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"precision": 13}, "precision"),
        ({"precision": -1}, "precision"),
        ({"device": "tpu"}, "requirements.device"),
        ({"min_memory_mb": -5}, "requirements.min_memory_mb"),
        ({"time_limit_ms": 0}, "limits.time_limit_ms"),
        ({"memory_limit_mb": 0}, "limits.memory_limit_mb"),
    ],
)
def test_bad_envelope_raises_spec_error(kwargs: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        make_spec("pca", {}, DIGEST, **kwargs)
    assert info.value.field == field


def test_unknown_model_and_bad_digest_and_tolerance() -> None:
    with pytest.raises(SpecError, match="unknown model") as info:
        make_spec("svm", {}, DIGEST)
    assert info.value.field == "model"
    with pytest.raises(SpecError) as info:
        make_spec("pca", {}, b"short")
    assert info.value.field == "dataset_digest"
    with pytest.raises(SpecError) as info:
        Tolerance(abs=-1, ppm=0)
    assert info.value.field == "tolerance.abs"


def test_decode_refuses_garbage_and_non_canonical_encodings() -> None:
    spec = make_spec("kmeans", {"k": 3}, DIGEST)
    wire = spec.to_wire()
    with pytest.raises(SpecError):
        JobSpec.decode(b"\xc1garbage")
    short = list(wire)
    short[2] = [p for p in wire[2] if p[0] != "seed"]  # a default left out
    with pytest.raises(SpecError, match="canonical"):
        JobSpec.decode(msgpack.packb(short, use_bin_type=True))
    reordered = list(wire)
    reordered[2] = list(reversed(wire[2]))
    with pytest.raises(SpecError, match="canonical"):
        JobSpec.decode(msgpack.packb(reordered, use_bin_type=True))
    bad = list(wire)
    bad[2] = [["k", -3] if p[0] == "k" else p for p in wire[2]]
    with pytest.raises(SpecError) as info:
        JobSpec.decode(msgpack.packb(bad, use_bin_type=True))
    assert info.value.field == "params.k"


@given(
    k=st.integers(1, 1024),
    iterations=st.integers(1, 10_000),
    seed=st.integers(0, 2**63 - 1),
    init=st.sampled_from(["k-means++", "random"]),
    n_init=st.integers(1, 1000),
    limits=st.builds(Limits, st.integers(1, 86_400_000), st.integers(1, 1 << 20)),
)
def test_valid_specs_round_trip_through_bytes(
    k: int, iterations: int, seed: int, init: str, n_init: int, limits: Limits
) -> None:
    spec = make_spec(
        "kmeans", {"k": k, "iterations": iterations, "seed": seed, "init": init, "n_init": n_init}, DIGEST,
        time_limit_ms=limits.time_limit_ms, memory_limit_mb=limits.memory_limit_mb,
    )
    assert JobSpec.decode(spec.encode()).digest == spec.digest
