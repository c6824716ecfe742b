"""Chaos, end to end with real processes: a 4-validator + 2-worker devnet under transfer load (the load
generator in a thread) and with jobs in flight, two validators' block clocks skewed by ±400 ms (the node's
test-only ``DACN_TEST_CLOCK_SKEW_MS``), and a scripted sequence of faults picked with a fixed seed:

1. ``kill -9`` of a random validator (its process group), then a restart from its store;
2. ``kill -9`` of a random worker-only node, then a restart;
3. a validator paused with SIGSTOP while the others commit several heights, then SIGCONT;
4. a validator's peer links cut (SIGUSR1 with ``DACN_TEST_ISOLATE_S``: it bans every connected peer for a few
   seconds, so its links drop and no peer can reconnect) and restored when the bans lapse.

After each fault: the rest keep committing; the faulted node catches up; no fork (one block hash at every
height every node has); one state root at a common height; total supply unchanged. At the end: every tx the load
generator saw committed is in every node's chain, and every job is terminal. A second test makes real network
partitions with Linux network namespaces when the machine allows it (root and ``ip netns``)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from bootstrap.cli import ClientError, NodeClient
from bootstrap.cli.devnet import (
    DevnetNode,
    create_devnet,
    devnet_down,
    find_port_base,
    node_pid,
    start_node,
    wait_ready,
)
from bootstrap.cli.loadgen import LoadConfig, LoadReport, run_load
from tests.e2e.netkit import wait_for

pytestmark = pytest.mark.slow

SKEW = {1: "400", 2: "-400"}


class Chaos:
    """The devnet under test, with the invariants checked after each fault."""

    def __init__(self, d: Path, nodes: list[DevnetNode]) -> None:
        self.d = d
        self.nodes = nodes
        self.clients = [n.client(timeout=10) for n in nodes]
        self.procs: dict[int, subprocess.Popen] = {}
        self.checked_to = 0  # heights up to this one were compared on every node
        self.supply: int | None = None

    def env(self, i: int) -> dict[str, str]:
        env = {"DACN_TEST_ISOLATE_S": "4"}
        if i in SKEW:
            env["DACN_TEST_CLOCK_SKEW_MS"] = SKEW[i]
        return env

    def start(self, i: int) -> None:
        self.procs[i] = start_node(self.d, self.nodes[i], env=self.env(i))

    def kill9(self, i: int) -> None:
        pid = node_pid(self.d, i)
        assert pid is not None, f"node{i} is not running"
        os.killpg(pid, signal.SIGKILL)  # its own session: the compute children go too
        proc = self.procs.pop(i, None)
        if proc is not None:
            proc.wait(timeout=10)

    def height(self, i: int) -> int:
        return int(self.clients[i].head()["height"])

    def live(self, others: list[int], blocks: int, timeout: float = 40) -> None:
        h0 = max(self.height(i) for i in others)
        wait_for(f"{blocks} more blocks on nodes {others}",
                 lambda: min(self.height(i) for i in others) >= h0 + blocks, timeout=timeout)

    def caught_up(self, i: int, timeout: float = 40) -> None:
        def ok() -> bool:
            try:
                return self.height(i) >= max(self.height(j) for j in range(len(self.nodes)) if j != i) - 1
            except ClientError:
                return False
        wait_for(f"node{i} catching up", ok, timeout=timeout)

    def invariants(self) -> None:
        """No fork, one state root, total supply unchanged — over every node."""
        top = min(self.height(i) for i in range(len(self.nodes)))
        for h in range(max(1, self.checked_to), top + 1):
            blocks = [c.get(f"/blocks/{h}") for c in self.clients]
            assert len({b["hash"] for b in blocks}) == 1, f"fork at height {h}"
            assert len({b["state_root_before"] for b in blocks}) == 1, f"state roots differ before {h}"
        self.checked_to = top

        def one_root() -> bool:
            heads = [c.head() for c in self.clients]
            return len({(x["height"], x["state_root"]) for x in heads}) == 1
        # heads move under load: retry until every node reports the same height and root at one moment
        wait_for("every node at one height with one state root", one_root, timeout=30, poll_s=0.05)
        supplies = {c.get("/network/stats")["total_supply"] for c in self.clients}
        assert len(supplies) == 1, supplies
        if self.supply is None:
            self.supply = supplies.pop()
        else:
            assert supplies == {self.supply}, (supplies, self.supply)


def load_in_thread(cfg: LoadConfig) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["report"] = trio.run(run_load, cfg)
        except BaseException as exc:  # reported by the test after join
            out["error"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


def test_chaos_kills_pauses_cuts_and_skew_keep_one_chain(tmp_path: Path) -> None:
    rng = random.Random(8)
    d = tmp_path / "devnet"
    api = find_port_base(6)
    p2p = find_port_base(6, avoid=range(api, api + 6))
    nodes = create_devnet(d, 6, validators=4, api_port=api, p2p_port=p2p)
    chaos = Chaos(d, nodes)
    try:
        for i in range(6):
            chaos.start(i)
        wait_ready(nodes, directory=d, timeout=120, procs=chaos.procs)
        chaos.invariants()
        c0 = chaos.clients[0]
        c0.register_client("chaos", 10_000)
        jobs = [c0.submit_job("chaos", "linear_regression", 50)["job_id"] for _ in range(2)]
        # load on the two worker nodes and one validator; the watcher falls back when one is down
        cfg = LoadConfig([nodes[4].api_url, nodes[5].api_url, nodes[0].api_url], rate=40, duration=50,
                         accounts=8, faucet_home=Path(nodes[4].home), settle_s=40, batch_ms=200)
        loader, result = load_in_thread(cfg)

        validators, workers = [0, 1, 2, 3], [4, 5]
        # 1. kill -9 a validator, the other three carry on, it restarts from its store and catches up
        v = rng.choice(validators)
        chaos.kill9(v)
        chaos.live([i for i in range(6) if i != v], 3)
        chaos.start(v)
        chaos.caught_up(v)
        chaos.invariants()
        # 2. kill -9 a worker-only node
        w = rng.choice(workers)
        chaos.kill9(w)
        chaos.live([i for i in range(6) if i != w], 2)
        chaos.start(w)
        chaos.caught_up(w)
        chaos.invariants()
        # 3. pause a validator past several rounds
        v = rng.choice(validators)
        pid = node_pid(d, v)
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            chaos.live([i for i in range(6) if i != v], 4)
        finally:
            os.killpg(pid, signal.SIGCONT)
        chaos.caught_up(v)
        chaos.invariants()
        # 4. cut a validator's links (bans lapse after 4 s and discovery reconnects)
        v = rng.choice(validators)
        pid = node_pid(d, v)
        assert pid is not None
        others = [i for i in range(6) if i != v]
        os.kill(pid, signal.SIGUSR1)
        wait_for(f"node{v} without peers", lambda: chaos.clients[v].health()["peers"] == 0, timeout=10, poll_s=0.1)
        chaos.live(others, 2)
        wait_for(f"node{v} reconnected", lambda: chaos.clients[v].health()["peers"] > 0, timeout=30)
        chaos.caught_up(v)
        chaos.invariants()

        loader.join(timeout=120)
        assert not loader.is_alive(), "the load generator did not finish"
        assert "error" not in result, result.get("error")
        report: LoadReport = result["report"]
        assert report.committed > 0.5 * report.offered, report.to_dict()
        # no lost committed tx: everything the load generator saw committed is in every node's chain
        top = chaos.height(0)
        for i, c in enumerate(chaos.clients):
            ids = {tx["tx_id"] for h in range(report.first_height, min(top, chaos.height(i)) + 1)
                   for tx in c.get(f"/blocks/{h}")["txs"]}
            lost = report.committed_ids - ids
            assert not lost, f"node{i} lacks {len(lost)} committed txs"
        for job in jobs:
            final = c0.wait_job(job, timeout=90)
            assert final["status"] in ("verified", "failed", "refunded"), final
        chaos.invariants()
    finally:
        for i in range(6):  # a paused node would ignore SIGTERM
            pid = node_pid(d, i)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGCONT)
        devnet_down(d, timeout=10)


# ------------------------------------------------------------------------------------------ namespaces


def _netns_usable() -> str | None:
    """None when this process may make network namespaces; otherwise why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no iproute2 `ip`"
    name = f"dacnprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.mark.skipif(_netns_usable() is not None, reason=f"network namespaces unavailable: {_netns_usable()}")
def test_netns_partition_heals(tmp_path: Path) -> None:
    """Validator 3 runs in its own network namespace joined to the host by a veth pair; taking the link down is a
    real partition (packets go nowhere). The 3 others keep committing, it stalls; with the link back up it
    catches up to one chain."""
    tag = f"{os.getpid() % 10000}"
    ns, host_if, ns_if = f"dacn{tag}", f"dacnh{tag}", f"dacnn{tag}"
    octet = 10 + os.getpid() % 200
    host_ip, ns_ip = f"10.{octet}.77.1", f"10.{octet}.77.2"
    d = tmp_path / "devnet"
    procs: dict[int, subprocess.Popen] = {}
    log_file = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        api = find_port_base(4, host=host_ip)
        p2p = find_port_base(4, host=host_ip, avoid=range(api, api + 4))
        # every node listens on the veth address; node 3's copy of that address lives in the namespace
        nodes = create_devnet(d, 4, validators=4, api_port=api, p2p_port=p2p, host=host_ip)
        nodes[3].api_url = f"http://{ns_ip}:{api + 3}"
        cfg3 = Path(nodes[3].home) / "config.toml"
        cfg3.write_text(cfg3.read_text().replace(f"{host_ip}:{api + 3}", f"{ns_ip}:{api + 3}")
                        .replace(f"{host_ip}:{p2p + 3}", f"{ns_ip}:{p2p + 3}"))
        procs.update({i: start_node(d, nodes[i]) for i in range(3)})
        # the namespaced node: the same command run inside the namespace
        from bootstrap.cli.devnet import node_command

        log_file = open(d / "logs" / "node3.log", "ab")  # noqa: SIM115 (closed in finally)
        procs[3] = subprocess.Popen(["ip", "netns", "exec", ns, *node_command(nodes[3])], stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        clients = [NodeClient(n.api_url, timeout=10) for n in nodes]
        wait_ready(nodes, directory=d, timeout=120, procs={i: procs[i] for i in range(3)})
        wait_for("node3 connected", lambda: clients[3].health()["peers"] > 0, timeout=30)

        def height(i: int) -> int:
            return int(clients[i].head()["height"])

        def height_inside() -> int:
            """Node 3's height asked from inside its namespace (the host cannot reach it during the partition)."""
            code = (f"import json, urllib.request; print(json.load(urllib.request.urlopen("
                    f"'{nodes[3].api_url}/chain/head', timeout=5))['height'])")
            out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True,
                                 text=True, timeout=30, check=True)
            return int(out.stdout.strip())

        _ip("link", "set", host_if, "down")  # the partition
        try:
            stuck = height_inside()
            h0 = max(height(i) for i in range(3))
            wait_for("3 more blocks on the majority side",
                     lambda: min(height(i) for i in range(3)) >= h0 + 3, timeout=40)
            # alone it cannot commit (at most a block already decided in flight), but it is alive
            assert height_inside() <= stuck + 1
        finally:
            _ip("link", "set", host_if, "up")
        wait_for("node3 caught up after the partition healed",
                 lambda: height(3) >= min(height(i) for i in range(3)) - 1, timeout=60)
        top = min(height(i) for i in range(4))
        for h in range(1, top + 1):
            assert len({c.get(f"/blocks/{h}")["hash"] for c in clients}) == 1, f"fork at height {h}"
    finally:
        if 3 in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(procs[3].pid, signal.SIGKILL)
            procs[3].wait(timeout=10)
        if (d / "devnet.json").exists():
            devnet_down(d, timeout=10)
        if log_file is not None:
            log_file.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
