"""The hard corpus (``hard_corpus.py``) and random specs: no pair of honest runs may ever dispute.

Every entry runs on every CPU backend here at 1 and 2 threads, and again in a child process on older kernels
(``OPENBLAS_CORETYPE`` for NumPy's and SciPy's OpenBLAS, ``ATEN_CPU_CAPABILITY`` for PyTorch), standing in
for an honest peer on another CPU. All pairs must agree under the ledger's rule with the spec's tolerance, or
all raise the same typed error (class and code). Honest results must also pass their certificates.

``DACN_RANDOM_SPECS`` sets how many random specs the random test draws (default 300, about 15 s here) and
``DACN_RANDOM_SEED`` which ones (default 14).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from compute.certificates import check_certificate
from tests.compute.conftest import assert_honest_certificate
from tests.compute.hard_corpus import (
    CATEGORIES,
    Entry,
    Outcome,
    corpus,
    disputes,
    kernels,
    older_kernel_env,
    random_jobs,
    run_outcomes,
    worst_gap,
    write_datasets,
)

pytest.importorskip("threadpoolctl")

ENTRIES = corpus()
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def here(name: str) -> dict[str, Outcome]:
    entry = next(e for e in ENTRIES if e.name == name)
    return run_outcomes(entry.spec_for(entry.dataset), entry.dataset)


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Outcome]]:
    """Every entry's outcomes from a child process on older kernels; empty (and the test below says why)
    when this machine cannot provide them."""
    host = kernels()
    if not host["numpy_openblas"]:
        return {}
    env = older_kernel_env(host)
    work = tmp_path_factory.mktemp("corpus")
    write_datasets(ENTRIES, work / "datasets.bin")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.compute.hard_corpus", "--datasets", str(work / "datasets.bin"),
         "--out", str(work / "out.json")],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(next(line for line in proc.stderr.splitlines() if line.startswith('{"kernels"')))["kernels"]
    assert env["OPENBLAS_CORETYPE"] in child["blas"], (env, child)
    if "ATEN_CPU_CAPABILITY" in env:
        assert child["aten"] == env["ATEN_CPU_CAPABILITY"].upper(), (env, child)
    runs = json.loads((work / "out.json").read_text())
    return {name: {f"{k}@{env['OPENBLAS_CORETYPE']}": Outcome.from_json(v) for k, v in out.items()}
            for name, out in runs.items()}


def test_the_child_ran_on_older_kernels(elsewhere: dict[str, dict[str, Outcome]]) -> None:
    if not elsewhere:
        pytest.skip("NumPy's BLAS is not OpenBLAS here: OPENBLAS_CORETYPE cannot select another kernel")
    assert set(elsewhere) == {e.name for e in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_honest_runs_agree_and_certify(entry: Entry, elsewhere: dict[str, dict[str, Outcome]]) -> None:
    spec = entry.spec_for(entry.dataset)
    runs = {**here(entry.name), **elsewhere.get(entry.name, {})}
    assert len(runs) >= 2
    bad = disputes(spec, runs)
    assert bad == [], f"{entry.name}: {len(bad)} disputing pairs, worst {worst_gap(runs)} units: {bad[:4]}"
    for key, outcome in here(entry.name).items():
        if outcome.result is not None:
            report = check_certificate(spec, entry.dataset, outcome.result)
            assert_honest_certificate(report, spec.model, f"{entry.name} on {key}")
        if outcome.summary is not None:
            assert len(outcome.summary) <= 256, "longer than the ledger's default max_summary_len"


def test_false_dispute_count_is_zero(elsewhere: dict[str, dict[str, Outcome]]) -> None:
    """The corpus-wide count, per category: disputing pairs and entries with any."""
    pairs, entries, totals = Counter(), Counter(), Counter()
    for entry in ENTRIES:
        runs = {**here(entry.name), **elsewhere.get(entry.name, {})}
        bad = disputes(entry.spec_for(entry.dataset), runs)
        pairs[entry.category] += len(bad)
        entries[entry.category] += bool(bad)
        totals[entry.category] += 1
    table = {c: f"{entries[c]}/{totals[c]} entries, {pairs[c]} pairs" for c in CATEGORIES}
    print("false disputes:", table)
    assert sum(pairs.values()) == 0, table


def test_random_specs_never_dispute() -> None:
    count = int(os.environ.get("DACN_RANDOM_SPECS", "300"))
    seed = int(os.environ.get("DACN_RANDOM_SEED", "14"))
    bad: list[str] = []
    models: Counter[str] = Counter()
    for name, spec, ds in random_jobs(count, seed):
        models[spec.model] += 1
        runs = run_outcomes(spec, ds)
        if disputes(spec, runs):
            bad.append(f"{name} {dict(spec.params)} on {ds.X.shape}: worst {worst_gap(runs)} units")
    assert len(models) == 4, models
    assert bad == [], f"{len(bad)} of {count} random jobs disputed: {bad[:8]}"


def test_summary_lengths_fit_the_ledger_cap_for_any_shape() -> None:
    from compute.models import linear, logistic, pca

    for m in range(1, 4097):
        groups, probes = pca.summary_shape(m)
        assert 1 + len(groups) * (1 + probes) <= 256 and sum(len(g) for g in groups) == m
    for n in (1, 2, 255, 256, 5_000_000):
        assert 1 + len(linear.probe_rows(n)) <= 256
        for classes in (1, 2, 3, 10, 254, 255, 1000):
            rows = logistic.probe_rows(n, classes)
            assert 2 + min(len(rows) * classes, logistic.MAX_PROBE_VALUES) <= 256 and len(rows) >= 1
