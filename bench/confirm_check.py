"""What a confirmer's check of an accepted artifact costs, with and without the second sketch (issue 13): the
accepted-summary check alone (``bootstrap.jobs.artifacts.accepted_artifact``) against the same check plus the
comparison with the confirmer's own run under a seed drawn after the commitment (``own=``), per model, beside what
running the job costs.

    .venv/bin/python -m bench.confirm_check

For each model, one job on a synthetic dataset larger than the demo's; the check is timed 7 times each way in
turn (``bench.machine.interleaved_medians``), medians. The check runs on the confirmer's worker thread inside the
confirmation stage, which waits for blocks anyway. Writes bench/results/confirm_check.md.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from bench.machine import interleaved_medians, machine_line
from bootstrap.jobs import accepted_artifact
from compute.binding import confirm_seed
from compute.dataset import synthetic
from compute.executor import execute
from compute.spec import make_spec
from ledger.state import Job

RESULTS = Path(__file__).resolve().parent / "results" / "confirm_check.md"
CASES = [
    ("linear_regression", {}, ("regression", 20_000, 20)),
    ("logistic_regression", {}, ("classification", 20_000, 20)),
    ("kmeans", {"k": 8}, ("blobs", 20_000, 20)),
    ("pca", {"n_components": 5}, ("blobs", 20_000, 50)),
    ("mlp_train", {"epochs": 5, "hidden": [128, 128], "batch_size": 128}, ("classification", 5_000, 32)),
]


def main() -> None:
    rows = []
    for model, params, (kind, n, d) in CASES:
        ds = synthetic(kind, n, d, seed=1)
        spec = make_spec(model, params, ds.digest, min_memory_mb=0, time_limit_ms=300_000, memory_limit_mb=4096)
        t = time.perf_counter()
        result = execute(spec, ds)
        run_s = time.perf_counter() - t
        job = Job(job_id=b"j" * 32, dataset_digest=ds.digest, result_summary=list(result.summary),
                  result_artifact=result.artifact_digest, tolerance_abs=spec.tolerance.abs,
                  tolerance_ppm=spec.tolerance.ppm)
        own = (result.artifact, confirm_seed(job.job_id, b"h" * 32))
        alone, both = interleaved_medians([partial(accepted_artifact, job, spec, result.artifact),
                                           partial(accepted_artifact, job, spec, result.artifact, own)], 7)
        rows.append((model, f"{n:,} × {d}", len(result.artifact), run_s, alone, both))
    lines = [
        "# confirm_check: a confirmer's check of the accepted artifact, with and without the second sketch",
        "",
        "Command: `.venv/bin/python -m bench.confirm_check`",
        "",
        machine_line(),
        "",
        "| model | rows × columns | artifact | the run | accepted summary only | with the second sketch "
        "| added ÷ run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, shape, size, run_s, alone, both in rows:
        lines.append(f"| {model} | {shape} | {size / 1e3:,.0f} kB | {run_s * 1e3:,.0f} ms | {alone * 1e3:.1f} ms | "
                     f"{both * 1e3:.1f} ms | {(both - alone) / run_s:.2%} |")
    lines += ["", "The second sketch recomputes two summaries (the accepted artifact's and the confirmer's own) under "
              "a fresh seed. It runs on the confirmer's worker thread while the confirmation stage waits for "
              "blocks, so a job's latency does not change."]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
