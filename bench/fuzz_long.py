"""Long fuzzing runs over the decoders the bounded tests fuzz (``tests/*/test_fuzz_*.py``, their ``TARGETS``).

    .venv/bin/python -m bench.fuzz_long                                  # Hypothesis, 30 s per target
    .venv/bin/python -m bench.fuzz_long --engine atheris --seconds 300   # coverage-guided libFuzzer, per target
    .venv/bin/python -m bench.fuzz_long --targets ledger.decode_signed_tx,p2pnet.decode_message --seconds 600
    .venv/bin/python -m bench.fuzz_long --list

Both engines check the same property as the tests: a decoder either raises its own typed error or returns
something that passes the target's check (mostly: it re-encodes to exactly the bytes it read). Hypothesis runs
random bytes, byte-level and structure-aware mutants of valid encodings, in chunks of fresh seeds until the time
is up. atheris (``pip install atheris``; bench-only) instruments the libraries and lets libFuzzer grow a corpus
from valid encodings by coverage; each target runs in its own process, which stops at the first crash and leaves
the input in ``--artifacts``. A markdown table of executions and outcomes goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_MODULES = (
    "tests.p2pnet.test_fuzz_wire",
    "tests.ledger.test_fuzz_tx",
    "tests.ledger.test_fuzz_blocks",
    "tests.bootstrap.test_fuzz_wire",
    "tests.compute.test_fuzz_spec",
    "tests.compute.test_fuzz_results",
)
# The packages atheris instruments for coverage (everything of theirs the targets import).
LIBRARIES = ("p2pnet", "ledger", "bootstrap", "compute")


def load_targets() -> dict[str, Any]:
    """Every fuzz target of the test suite, by name."""
    import importlib

    out: dict[str, Any] = {}
    for mod in TARGET_MODULES:
        for t in importlib.import_module(mod).TARGETS:
            out[t.name] = t
    return out


@dataclass
class Outcome:
    target: str
    engine: str
    executions: int
    seconds: float
    result: str


# ----------------------------------------------------------------------------------------------- hypothesis


def run_hypothesis(target: Any, seconds: float, chunk: int = 2000) -> Outcome:
    """Fuzz ``target`` with Hypothesis in chunks of ``chunk`` examples, each under a fresh seed, until time is up."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    count = 0

    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        target.run_one(data)

    start = time.perf_counter()
    k = 0
    result = "ok"
    while time.perf_counter() - start < seconds:
        k += 1
        test = seed(int.from_bytes(os.urandom(8), "big"))(
            settings(
                max_examples=chunk,
                deadline=None,
                database=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate, Phase.shrink],
            )(given(target.inputs())(one))
        )
        try:
            test()
        except Exception as exc:  # a property failure: report it with Hypothesis's falsifying example
            notes = "; ".join(getattr(exc, "__notes__", []))[:300]
            result = f"FAILED: {type(exc).__name__}: {str(exc)[:200]} {notes}"
            break
    return Outcome(target.name, "hypothesis", count, time.perf_counter() - start, result)


# -------------------------------------------------------------------------------------------------- atheris


def _atheris_child(name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the subprocess: instrument the libraries, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=list(LIBRARIES)):
        target = load_targets()[name]

    def test_one_input(data: bytes) -> None:
        target.run_one(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()


def _seed_corpus(target: Any, directory: Path, n: int = 64) -> None:
    from hypothesis.errors import NonInteractiveExampleWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        for i in range(n):
            (directory / f"seed-{i}").write_bytes(target.valid.example())


def run_atheris(target: Any, seconds: int, artifacts: Path) -> Outcome:
    """Fuzz ``target`` with atheris/libFuzzer in a subprocess for ``seconds``."""
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d)
        _seed_corpus(target, corpus)
        cmd = [
            sys.executable, "-m", "bench.fuzz_long", "--atheris-child", target.name, "--",
            str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=3072", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/{target.name}-",
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        took = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    executions = int(m.group(1)) if m else 0
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    if proc.returncode == 0:
        result = "ok" + (f" (cov {cov[-1][0]}, ft {cov[-1][1]})" if cov else "")
    else:
        crash = re.search(r"(?:Uncaught Python exception|Test unit written to) ?:?(.*)", log)
        tail = [line for line in log.splitlines() if "Error" in line or "Exception" in line][-3:]
        result = f"CRASH (rc {proc.returncode}): {' | '.join(tail)[:300]} {crash.group(0)[:200] if crash else ''}"
    return Outcome(target.name, "atheris", executions, took, result)


# ----------------------------------------------------------------------------------------------------- main


def table(rows: list[Outcome]) -> str:
    out = ["| target | engine | executions | wall s | exec/s | result |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        rate = r.executions / r.seconds if r.seconds else 0.0
        out.append(f"| {r.target} | {r.engine} | {r.executions:,} | {r.seconds:.0f} | {rate:,.0f} | {r.result} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--atheris-child"]:
        rest = argv[3:] if argv[2:3] == ["--"] else argv[2:]
        _atheris_child(argv[1], rest)
        return 0
    ap = argparse.ArgumentParser(description="Long fuzzing runs over the test suite's fuzz targets.")
    ap.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    ap.add_argument("--seconds", type=int, default=30, help="per target")
    ap.add_argument("--targets", default="", help="comma-separated names (default: all)")
    ap.add_argument("--artifacts", default=str(Path(tempfile.gettempdir()) / "dacn-fuzz"))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    targets = load_targets()
    if args.list:
        print("\n".join(targets))
        return 0
    names = [n for n in args.targets.split(",") if n] or list(targets)
    unknown = [n for n in names if n not in targets]
    if unknown:
        ap.error(f"unknown targets {unknown}; --list shows them")
    rows: list[Outcome] = []
    for name in names:
        if args.engine == "atheris":
            row = run_atheris(targets[name], args.seconds, Path(args.artifacts))
        else:
            row = run_hypothesis(targets[name], args.seconds)
        print(f"{row.target}: {row.executions} in {row.seconds:.0f} s, {row.result}", file=sys.stderr)
        rows.append(row)
    print(table(rows))
    return 0 if all(r.result.startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
