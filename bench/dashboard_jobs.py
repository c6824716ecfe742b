"""What the dashboard's first load costs on a node with a long job history: the seven requests it makes
(``/health``, ``/network/stats``, ``/workers``, ``/clients``, ``/jobs?limit=100``, ``/blocks?limit=60``,
``/peers``) over real HTTP to a real single-validator node holding 1k, 10k and 100k finished jobs, beside what the
old ``GET /jobs`` (every job's row, no page) costs on the same node, and the job index's build time.

    .venv/bin/python -m bench.dashboard_jobs [--sizes 1000,10000,100000]

The jobs are written into the node's state directly (finished ``verified`` jobs of a few clients, with roles and a
history as the ledger leaves them) and the node's job index is rebuilt, as a restarted node does; blocks keep
being produced meanwhile. Times are wall-clock (what a person waits for), medians of 5 loads. Writes
bench/results/dashboard_jobs.md. Goal (issue 15): the dashboard in under a second at 100,000 jobs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from bench.machine import machine_line
from bootstrap.api.bodies import jsonable
from bootstrap.cli import NodeClient
from bootstrap.home import NodeConfig, init_home
from bootstrap.node import Node
from ledger.state import Job

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard_jobs.md"
DASHBOARD = ("/health", "/network/stats", "/workers", "/clients", "/jobs?limit=100", "/blocks?limit=60", "/peers")
ROUNDS = 5


def finished_job(n: int, clients: list[bytes], worker: bytes, verifier: bytes) -> Job:
    """A verified job as the ledger leaves it: roles, commits and reveals, a history, no escrow."""
    jid = n.to_bytes(32, "big")
    h = 10 + n // 50
    return Job(job_id=jid, client=clients[n % len(clients)], model="kmeans", params_digest=bytes(32),
               dataset_digest=bytes(32), reward=50, verification_fee=5, status="verified", escrow=0,
               submitted_at=h, bid_deadline=h, deadline=h + 6, worker=worker, verifier=verifier, price=50,
               verdict="agreed", result_summary=[1, 2, 3], result_artifact=bytes(32),
               commits={worker: bytes(32), verifier: bytes(32)},
               reveals={worker: ([1, 2, 3], bytes(32), 0), verifier: ([1, 2, 3], bytes(32), 0)},
               history=[("assigned", h), ("revealing", h + 3), ("verified", h + 5)])


def get(client: NodeClient, path: str) -> None:
    p, _, q = path.partition("?")
    query = dict(kv.split("=") for kv in q.split("&")) if q else {}
    client.get(p, **query)


async def measure(size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        init_home(home, config=NodeConfig.test(), chain_id="bench-jobs")
        node = Node(home, NodeConfig.test(api_listen="127.0.0.1:0"))
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            client = NodeClient("http://{}:{}".format(*node.api_address), timeout=120)
            state = node.state
            accounts = [bytes([i]) * 32 for i in range(1, 9)]
            for n in range(size):
                job = finished_job(n, accounts[2:], accounts[0], accounts[1])
                state.jobs[job.job_id] = job
            t0 = time.perf_counter()
            node.job_index.rebuild(state)
            build_s = time.perf_counter() - t0

            def load() -> float:
                t = time.perf_counter()
                for path in DASHBOARD:
                    get(client, path)
                return time.perf_counter() - t

            def old_listing() -> float:
                # What GET /jobs did before pages: every job's row, sorted, as JSON.
                t = time.perf_counter()
                rows = [node.views.job_row(j) for j in state.jobs.values()]
                rows.sort(key=lambda v: (v["submitted_at"] or 0, v["job_id"]))
                jsonable(rows)
                return time.perf_counter() - t

            loads = [await trio.to_thread.run_sync(load) for _ in range(ROUNDS)]
            jobs_page = []
            for _ in range(ROUNDS):
                t = time.perf_counter()
                await trio.to_thread.run_sync(get, client, "/jobs?limit=100")
                jobs_page.append(time.perf_counter() - t)
            olds = [old_listing() for _ in range(3 if size <= 10_000 else 1)]
            node.stop()
    return {"size": size, "build_ms": build_s * 1e3, "load_ms": statistics.median(loads) * 1e3,
            "page_ms": statistics.median(jobs_page) * 1e3, "old_ms": statistics.median(olds) * 1e3}


def write(rows: list[dict[str, float]], command: str) -> None:
    lines = [
        "# dashboard_jobs: the dashboard's first load on a node with a long job history",
        "",
        f"Command: `{command}`",
        machine_line() + ". Wall-clock medians of 5 loads.",
        "",
        "| finished jobs | dashboard's 7 requests | `GET /jobs?limit=100` | job index build (node start) "
        "| every job's row, as `GET /jobs` built before pages |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {int(r['size']):,} | {r['load_ms']:.0f} ms | {r['page_ms']:.1f} ms | {r['build_ms']:.0f} ms "
                     f"| {r['old_ms']:.0f} ms |")
    first, last = rows[0], rows[-1]
    lines += [
        "",
        f"From {int(first['size']):,} to {int(last['size']):,} jobs ({last['size'] / first['size']:.0f}×) the "
        f"dashboard's load went {first['load_ms']:.0f} → {last['load_ms']:.0f} ms "
        f"({last['load_ms'] / first['load_ms']:.2f}×) and a page of jobs {first['page_ms']:.1f} → "
        f"{last['page_ms']:.1f} ms; the old unpaged listing grew {last['old_ms'] / first['old_ms']:.0f}×. "
        "Goal: under a second at 100,000 jobs.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [trio.run(measure, size) for size in sizes]
    default = args.sizes == "1000,10000,100000"
    write(rows, ".venv/bin/python -m bench.dashboard_jobs" + ("" if default else f" --sizes {args.sizes}"))


if __name__ == "__main__":
    main()
