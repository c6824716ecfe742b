"""Fault specs and perturbations, and the agent's cheap device probe (checked against compute's own tables)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.agent import (
    FAULT_MODES,
    Faults,
    FaultSpecError,
    LocalDevice,
    parse_faults,
    perturb_summary,
    probe_device,
    torch_installed,
)
from compute.executor import backends_for
from compute.spec import MODELS
from ledger.tx import I64_MAX, I64_MIN
from ledger.verdict import summaries_agree


@pytest.mark.parametrize("mode", FAULT_MODES)
def test_every_mode_parses_and_applies_to_every_key(mode):
    f = parse_faults(mode)
    assert f == Faults(mode) and f.applies("node", mode) and f.applies("alice", mode)
    assert f.active == (mode != "none")


def test_a_key_list_restricts_the_fault():
    f = parse_faults("no-reveal@w1, node")
    assert f.keys == frozenset({"w1", "node"}) and f.applies("node", "no-reveal")
    assert not f.applies("w2", "no-reveal") and not f.applies("w1", "random-results")
    assert f.describe() == "no-reveal@node,w1"
    assert parse_faults(None) == Faults()


@pytest.mark.parametrize("bad", ["random", "RANDOM-RESULTS", "no-reveal@", "no-reveal@a,,b", "@w1", ""])
def test_bad_fault_specs_are_refused_with_the_value(bad):
    with pytest.raises(FaultSpecError) as exc:
        parse_faults(bad)
    assert exc.value.value == bad


int64 = st.integers(min_value=I64_MIN, max_value=I64_MAX)


@given(st.lists(int64, max_size=32), st.binary(min_size=1, max_size=32))
def test_perturbed_summaries_disagree_and_stay_in_the_ledger_range(summary, seed):
    wrong = perturb_summary(summary, seed)
    assert all(I64_MIN <= v <= I64_MAX for v in wrong)
    for tol_abs, tol_ppm in ((0, 0), (3, 1000), (1000, 100_000)):  # tighter than any default and looser ones
        assert not summaries_agree(wrong, summary, tol_abs, tol_ppm)


def test_two_cheaters_do_not_agree_with_each_other():
    s = [10, 20, 30]
    assert not summaries_agree(perturb_summary(s, b"a"), perturb_summary(s, b"b"), 3, 1000)
    assert perturb_summary(s, b"a") == perturb_summary(s, b"a")  # deterministic


def test_probe_lists_only_models_whose_backends_this_process_has():
    dev = probe_device()
    assert dev.device_kind in ("cpu", "gpu") and dev.memory_mb > 0
    for model in MODELS:
        torch_only = all(b.startswith("torch") for b in backends_for(model))
        assert (model in dev.models) == (torch_installed() or not torch_only), model


def test_device_problems_name_the_reason():
    cpu = LocalDevice("cpu", "c", 1024, 0, frozenset({"pca"}))
    assert cpu.problem("pca", "any", 512) is None
    assert "not runnable" in cpu.problem("kmeans", "any", 0)
    assert "gpu" in cpu.problem("pca", "gpu", 0)
    assert "2048 MB" in cpu.problem("pca", "any", 2048)
