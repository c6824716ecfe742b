"""``dacn demo`` (``make demo``): the seed's walk-through on a real network.

A 4-node devnet starts in the background; workers with the seed's GPUs and clients with the seed's balances are
registered on different nodes; one job of each model is submitted from a different node; each job is shown as it
moves through its lifecycle (open → assigned → revealing → verified) until it is settled and paid; then balances,
reputations and every node's state root are printed, and the nodes keep running (URLs shown) until Ctrl-C.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.cli.client import TERMINAL_JOB_STATUSES, ApiRequestError, NodeClient
from bootstrap.cli.devnet import (
    STATE_FILE,
    DevnetNode,
    devnet_down,
    devnet_status,
    devnet_up,
    format_table,
)

# The seed's cast: three GPUs with their declared capacity and stake, three clients with their balances.
WORKERS = [
    ("worker_rtx4090_01", "RTX 4090", 82.6, 150),
    ("worker_rtx3090_01", "RTX 3090", 35.6, 120),
    ("worker_a100_01", "A100", 19.5, 200),
]
CLIENTS = [("alice", 1000), ("bob", 800), ("carol", 1200)]
JOBS = [
    # model, client, reward, params
    ("linear_regression", "alice", 50, None),
    ("kmeans", "bob", 60, {"k": 3}),
    ("pca", "carol", 40, {"n_components": 2}),
    ("logistic_regression", "alice", 45, None),
    ("mlp_train", "bob", 80, {"hidden": [16], "epochs": 5}),
]


@dataclass
class TrackedJob:
    label: str
    node: DevnetNode
    client: str
    job_id: str
    status: str = "submitted"
    view: dict[str, Any] | None = None


def _short(text: Any, n: int = 10) -> str:
    s = str(text or "-")
    return s if len(s) <= n else s[:n] + "…"


def follow_jobs(jobs: list[TrackedJob], timeout: float, say: Callable[[str], None], poll_s: float = 0.5,
                until: Callable[[TrackedJob], bool] | None = None, start: float | None = None) -> None:
    """Poll every job on the node it was submitted to, printing each change of status with who holds which role,
    until every job satisfies ``until`` (default: settled)."""
    done = until or (lambda j: j.status in TERMINAL_JOB_STATUSES)
    start = time.monotonic() if start is None else start
    deadline = time.monotonic() + timeout
    while True:
        for job in jobs:
            if job.status in TERMINAL_JOB_STATUSES:
                continue
            try:
                view = job.node.client().job(job.job_id)
            except ApiRequestError as exc:
                if exc.status == 404:
                    continue
                raise
            if view.get("status") != job.status:
                checker = "auditor" if view.get("check") == "audit" else "referee"
                roles = "  ".join(f"{label}={_short(view.get(f'{r}_id'), 16)}" for r, label in (
                    ("worker", "worker"), ("verifier", "verifier"), ("referee", checker)) if view.get(f"{r}_id"))
                if view.get("panel_ids"):
                    roles += f"  panel of {len(view['panel_ids'])}"
                say(f"  [{time.monotonic() - start:6.1f}s] {job.label:32} {job.status:>9} → {view['status']:9} "
                    f"{roles}")
                job.status = view["status"]
            job.view = view
        if all(done(j) for j in jobs):
            return
        if time.monotonic() > deadline:
            pending = ", ".join(f"{j.label} ({j.status})" for j in jobs if not done(j))
            raise TimeoutError(f"jobs not settled after {timeout:g}s: {pending}")
        time.sleep(poll_s)


def run_demo(
    directory: Path,
    *,
    nodes: int = 4,
    api_port: int = 5000,
    p2p_port: int = 4001,
    keep_running: bool = True,
    timeout: float = 300.0,
    fresh: bool = True,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
    wait_for_interrupt: Callable[[], None] | None = None,
) -> int:
    """Run the walk-through; returns 0 when every job was verified and all nodes agree, else 1."""
    directory = Path(directory)
    if fresh and (directory / STATE_FILE).exists():
        devnet_down(directory)
        shutil.rmtree(directory)
    say(f"== starting a {nodes}-node devnet in {directory} (API ports {api_port}.., p2p ports {p2p_port}..)")
    started = False
    try:
        net = devnet_up(directory, nodes, api_port=api_port, p2p_port=p2p_port,
                        progress=lambda line: say(f"   {line}"))
        started = True
        say("\n" + format_table(devnet_status(directory)) + "\n")
        ok = _walkthrough(net, timeout, say)
        if keep_running:
            say("\n== the nodes keep running; try:")
            say(f"   open {net[0].api_url}/dashboard   (the live dashboard; every node serves one)")
            say(f"   curl {net[0].api_url}/network/stats")
            for n in net:
                say(f"   node{n.index}: {n.api_url}   ({n.role}, peer {n.peer_id})")
            say("   press Ctrl-C to stop them (their data stays in the demo directory)")
            try:
                (wait_for_interrupt or _sleep_forever)()
            except KeyboardInterrupt:
                say("")
        return 0 if ok else 1
    finally:
        if started or (directory / STATE_FILE).exists():
            stopped = devnet_down(directory)
            say(f"== stopped {len(stopped)} node(s)")


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


def _walkthrough(net: list[DevnetNode], timeout: float, say: Callable[[str], None]) -> bool:
    clients = [n.client(timeout=120.0) for n in net]
    pick = lambda i: (net[i % len(net)], clients[i % len(net)])  # noqa: E731 — a short index-to-node rule

    say("== registering workers (each on a different node; stake funded from the devnet faucet)")
    for i, (name, gpu, capacity, stake) in enumerate(WORKERS):
        node, c = pick(i)
        r = c.register_worker(name, stake, gpu, capacity)
        say(f"   {name:18} on node{node.index}: {gpu:8} declared {capacity:5} TFLOPS, stake {stake}, "
            f"measured {r['measured']['capacity']} GFLOP/s  -> {r['status']} at height {r.get('height')}")

    say("== registering clients")
    for i, (name, balance) in enumerate(CLIENTS):
        node, c = pick(i)
        r = c.register_client(name, balance)
        say(f"   {name:6} on node{node.index}: balance {r['balance']}  ({r['account']})")

    before = {name: pick(i)[1].balance(name)["balance"] for i, (name, _) in enumerate(CLIENTS)}
    home_of = {name: pick(i) for i, (name, _) in enumerate(CLIENTS)}

    say("== submitting one job of each model from different nodes, all at once")
    jobs: list[TrackedJob] = []
    t0 = time.monotonic()
    for model, client_name, reward, params in JOBS:
        node, c = home_of[client_name]
        r = c.submit_job(client_name, model, reward, params=params)
        label = f"{model} ({client_name}@node{node.index})"
        say(f"   submitted {label:36} job {_short(r['job_id'], 16)} reward {reward}")
        jobs.append(TrackedJob(label, node, client_name, r["job_id"]))

    say("== following the jobs to settlement")
    follow_jobs(jobs, timeout, say, start=t0)

    say("== results")
    all_ok = True
    for job in jobs:
        v = job.view or {}
        ok = v.get("status") == "verified"
        all_ok &= ok
        summary = ""
        if ok:
            try:
                res = job.node.client().job_result(job.job_id)
                fields = res.get("display") or res.get("artifact") or {}
                summary = "  " + ", ".join(f"{k}={_fmt(val)}" for k, val in list(fields.items())[:3]
                                           if not isinstance(val, dict))
            except ApiRequestError as exc:
                summary = f"  (result not fetched: {exc.error})"
        elif v.get("verdict_words"):  # why it ended so, and what each party revealed
            reveals = "; ".join(f"{o['role']}: {o['words']}" for o in v.get("outcomes") or [])
            summary = f"  ({v['verdict_words']}{'; ' + reveals if reveals else ''})"
        say(f"   {job.label:36} {v.get('status'):9} price {v.get('price')}  fee {v.get('verification_fee')}"
            f"{summary}")

    say("== client balances (before → after)")
    for name, _ in CLIENTS:
        after = home_of[name][1].balance(name)["balance"]
        say(f"   {name:6} {before[name]:6} → {after:6}  (spent {before[name] - after})")

    say("== workers (reputation, jobs done, stake)")
    names = {}
    for c in clients:  # each worker key lives on the node it was registered on; ask them all for names
        for w in c.workers():
            if w.get("name"):
                names.setdefault(w["worker_id"], f"{w['name']}@{c.base_url.rsplit(':', 1)[1]}")
    for w in clients[0].workers():
        label = names.get(w["worker_id"], "")
        say(f"   {_short(w['worker_id'], 20):22} {label:26} reputation {w['reputation']:4}  "
            f"done {w['jobs_done']}  failed {w['jobs_failed']}  stake {w['stake']}")

    say("== do the nodes agree?")
    heads = _agreeing_heads(clients)
    roots = {(h["hash"], h["state_root"]) for h in heads}
    say(f"   all {len(heads)} nodes hold block {_short(heads[0]['hash'], 16)} at height {heads[0]['height']} "
        f"on state root {_short(heads[0]['state_root'], 16)}" if len(roots) == 1 else f"   nodes disagree: {heads}")
    return all_ok and len(roots) == 1


def _agreeing_heads(clients: list[NodeClient]) -> list[dict[str, Any]]:
    """Each node's block hash and state root at one common height (the nodes commit each block at slightly
    different moments, so compare the lowest height all of them have; a block carries the root before it)."""
    h = min(c.head()["height"] for c in clients)
    out = []
    for c in clients:
        block = c.get(f"/blocks/{h}")
        out.append({"height": h, "hash": block["hash"], "state_root": block["state_root_before"]})
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value[:3]) + (", …]" if len(value) > 3 else "]")
    return str(value)
