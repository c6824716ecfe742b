"""Fuzzing ``JobSpec.decode``: job specs arrive from peers inside job-data announcements (``dacn/jobdata/1``),
and the node's gossip validator expects a :class:`~compute.errors.ComputeError` for anything malformed.

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import strategies as st

from compute.errors import ComputeError, SpecError
from compute.spec import MODEL_PARAMS, SPEC_TAG, JobSpec, make_spec, validate_params
from tests.fuzzing import Target, target_tests

specs = st.builds(
    lambda model, digest: make_spec(model, {}, digest),
    st.sampled_from(sorted(MODEL_PARAMS)),
    st.binary(min_size=32, max_size=32),
)


def _check_spec(spec: JobSpec, data: bytes) -> None:
    assert spec.encode() == data


TARGETS = [Target("compute.JobSpec.decode", JobSpec.decode, (ComputeError,), specs.map(JobSpec.encode), _check_spec)]


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


# Found by fuzzing: a list where a name belongs made ``decode`` raise TypeError ("unhashable type: 'list'"),
# which the node's job-data validator does not catch as a bad announcement.
@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda w: w.__setitem__(1, ["kmeans"]), "model"),
        (lambda w: w.__setitem__(2, [[["k"], 3]]), "params"),
        (lambda w: w.__setitem__(2, [[{"k": 1}, 3]]), "params"),
    ],
)
def test_a_structured_name_is_a_spec_error(mutate, field: str) -> None:
    wire = make_spec("kmeans", {"k": 3}, bytes(32)).to_wire()
    mutate(wire)
    with pytest.raises(SpecError) as info:
        JobSpec.decode(msgpack.packb(wire, use_bin_type=True))
    assert info.value.field == field


def test_validate_params_refuses_a_model_that_is_not_a_name() -> None:
    with pytest.raises(SpecError) as info:
        validate_params(["kmeans"], {})  # type: ignore[arg-type]
    assert info.value.field == "model"


def test_the_spec_tag_is_checked() -> None:
    wire = make_spec("pca", {}, bytes(32)).to_wire()
    wire[0] = SPEC_TAG + "x"
    with pytest.raises(SpecError):
        JobSpec.decode(msgpack.packb(wire, use_bin_type=True))
