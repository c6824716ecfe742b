"""How long the worker agent's planner holds the event loop per block, against the number of active jobs.

The planner runs synchronously on the node's trio loop after every committed block, so its cost is loop latency.
States are real ledger states (the ledger's test factories): N open jobs with known specs, or N assigned jobs
whose results are ready (the commit path, which hashes a commitment per local key).

    .venv/bin/python -m bench.agent_plan
"""

from __future__ import annotations

import statistics
import time

from bootstrap.agent import AgentMemory, LocalDevice, LocalKey, Planner, RunRecord
from compute.spec import MODELS, make_spec
from ledger.crypto import blake2b256
from ledger.tx import SubmitJob
from tests.ledger.factories import Chain, Wallet, account, make_state

KEYS = ["w1", "w2", "w3", "w4"]
# The jobs below say what the spec says (the test chain's default run time, no minimum memory): a job that
# disagrees with its spec is declined, or claimed as an error, instead of bid on.
SPEC = make_spec("linear_regression", {}, blake2b256(b"dataset"), memory_limit_mb=1024, min_memory_mb=0,
                 time_limit_ms=1_000)
CPU = LocalDevice("cpu", "bench", 16_384, 1, frozenset(MODELS))


def build(n_jobs: int, assigned: bool) -> tuple[Chain, AgentMemory]:
    chain = Chain(make_state(workers=KEYS, balances={"alice": 10**12}))
    alice = Wallet("alice")
    tol = SPEC.tolerance
    txs = [alice.sign(SubmitJob(SPEC.model, SPEC.digest, SPEC.dataset_digest, 1000, 100, tol.abs, tol.ppm, "any",
                                0, 3, 500, 100)) for _ in range(n_jobs)]
    chain.block(*txs)  # one block, so every job shares the bid window
    memory = AgentMemory(secret=b"b" * 32)
    memory.specs[SPEC.digest] = SPEC
    if assigned:
        w = Wallet("w1")
        chain.block(*[w.bid(t.tx_id, 500) for t in txs])
        chain.blocks(4)
        for t in txs:
            memory.results[t.tx_id] = RunRecord([1, 2, 3], blake2b256(b"a"), b"r" * 32)
    return chain, memory


def median_ms(fn, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    keys = [LocalKey(n, account(n)) for n in KEYS]
    planner = Planner(CPU, max_concurrent_jobs=10**6)
    print("| active jobs | phase | actions | plan() median ms | µs per job |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for n in (10, 100, 1000, 5000):
        for assigned in (False, True):
            chain, memory = build(n, assigned)
            actions = planner.plan(chain.state, keys, memory)
            ms = median_ms(lambda: planner.plan(chain.state, keys, memory))  # noqa: B023
            phase = "assigned, results ready (commits)" if assigned else "open, spec known (bids)"
            print(f"| {n} | {phase} | {len(actions)} | {ms:.2f} | {ms * 1000 / n:.1f} |")


if __name__ == "__main__":
    main()
