"""Quantisation, artifacts, device detection, the self-check command, and the import boundary."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute.canonical import JobResult, decode_artifact, dequantise, encode_artifact, quantise
from compute.device import detect_device
from compute.errors import BackendUnavailable, DatasetError, ResultError
from compute.executor import execute
from compute.selfcheck import run_selfcheck
from compute.spec import make_spec
from ledger.verdict import summaries_agree
from tests.compute.conftest import CASES

COMPUTE = Path(__file__).resolve().parents[2] / "compute"


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=50), st.integers(0, 9))
def test_quantise_is_round_half_even_of_the_scaled_value(values: list[float], precision: int) -> None:
    q = quantise(values, precision)
    assert all(isinstance(v, int) for v in q) and len(q) == len(values)
    for x, v in zip(values, q, strict=True):
        assert v == round(x * 10.0**precision)
    back = dequantise(q, precision)
    assert all(math.isclose(b, x, abs_tol=10.0**-precision) for b, x in zip(back, values, strict=True))


def test_quantise_refuses_non_finite_overflow_and_oversize() -> None:
    with pytest.raises(ResultError, match="NaN"):
        quantise([1.0, float("nan")], 3)
    with pytest.raises(ResultError, match="overflows"):
        quantise([1e300], 6)
    with pytest.raises(ResultError, match="limit"):
        quantise(np.zeros(10_000), 2)


def test_artifact_round_trip_and_result_decode_checks_digest() -> None:
    fields = {"a": np.arange(6.0).reshape(2, 3), "labels": np.arange(4, dtype=np.int32), "x": 1.5, "n": 3}
    data = encode_artifact("pca", b"s" * 32, b"d" * 32, fields)
    art = decode_artifact(data)
    assert art.model == "pca" and art.spec_digest == b"s" * 32
    assert np.array_equal(art.fields["a"], fields["a"]) and art.fields["labels"].dtype == np.int32
    assert art.fields["x"] == 1.5 and art.fields["n"] == 3
    with pytest.raises(ResultError):
        decode_artifact(data[:-5])
    case = CASES[0]
    result = execute(case.spec, case.dataset, "numpy")
    assert JobResult.decode(result.encode()) == result
    import dataclasses

    with pytest.raises(ResultError, match="digest"):
        JobResult.decode(dataclasses.replace(result, artifact=result.artifact[:-1]).encode())


def test_execute_refuses_mismatched_inputs() -> None:
    case = CASES[0]
    with pytest.raises(DatasetError, match="not the spec"):
        execute(make_spec("pca", {}, bytes(32)), case.dataset)
    with pytest.raises(BackendUnavailable, match="runs on"):
        execute(make_spec("mlp_train", {}, case.dataset.digest), case.dataset, "numpy")
    with pytest.raises(BackendUnavailable, match="requires a GPU"):
        execute(make_spec("pca", {}, case.dataset.digest, device="gpu"), case.dataset, "numpy")
    unlabelled = next(c for c in CASES if c.spec.model == "pca")
    with pytest.raises(DatasetError, match="integer class labels"):
        execute(make_spec("logistic_regression", {}, CASES[0].dataset.digest), CASES[0].dataset, "numpy")
    from compute.dataset import make_dataset

    no_y = make_dataset(unlabelled.dataset.X)
    with pytest.raises(DatasetError, match="target"):
        execute(make_spec("linear_regression", {}, no_y.digest), no_y, "numpy")


def test_detect_device_measures_capacity() -> None:
    info = detect_device(benchmark_s=0.05)
    assert info.cpu_cores >= 1 and info.memory_mb > 0 and info.cpu_model
    assert info.cpu_gflops > 0 and info.capacity_tflops > 0
    d = info.to_dict()
    assert d["capacity_gflops"] == max(info.cpu_gflops, info.gpu_gflops)
    assert info.device_class == ("gpu" if info.gpus else "any")


def test_selfcheck_passes_with_the_ledger_rule_and_flags_a_rule_that_refuses() -> None:
    lines: list[str] = []
    assert run_selfcheck(summaries_agree, rows=400, out=lines.append) == 0
    assert any(line.startswith("| mlp_train") for line in lines)
    assert run_selfcheck(lambda a, b, t, p: False, rows=400, out=[].append, only="pca") > 0


def test_compute_imports_without_torch_and_runs_cpu_models() -> None:
    # Simulate a machine without PyTorch: a meta-path hook that makes `import torch` fail.
    code = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('no torch here')
sys.meta_path.insert(0, NoTorch())
import compute
from compute import synthetic, make_spec, execute, available_backends, BackendUnavailable
ds = synthetic('regression', 200, 3, seed=1)
print(execute(make_spec('linear_regression', {}, ds.digest), ds, 'numpy').summary[0])
assert available_backends() == ('numpy', 'sklearn'), available_backends()
labelled = synthetic('classification', 200, 3, seed=1)
try:
    execute(make_spec('mlp_train', {}, labelled.digest), labelled, 'torch-cpu')
except BackendUnavailable as exc:
    print('refused:', exc.reason)
assert 'torch' not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "refused: PyTorch is not installed" in proc.stdout


def test_compute_respects_the_import_boundary() -> None:
    allowed = {"numpy", "sklearn", "torch", "msgpack", "threadpoolctl", "compute"}
    stdlib = set(sys.stdlib_module_names)
    for path in COMPUTE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or top in stdlib, f"{path.name} imports {name}"


def test_an_artifact_array_shape_numpy_cannot_hold_is_a_result_error() -> None:
    # Found by the fuzzer: a zero dimension passes the byte count, but numpy refuses the nominal size.
    import msgpack

    from compute.canonical import ARTIFACT_TAG, decode_artifact
    from compute.errors import ResultError

    for shape in ([0, 2**59], [0, 2**40, 2**40], [0] * 40):
        data = msgpack.packb([ARTIFACT_TAG, "m", b"", b"", [["a", ["<f8", shape, b""]]]])
        with pytest.raises(ResultError, match="cannot hold"):
            decode_artifact(data)
    ok = msgpack.packb([ARTIFACT_TAG, "m", b"", b"", [["a", ["<f8", [3, 0], b""]]]])
    assert decode_artifact(ok).fields["a"].shape == (3, 0)
