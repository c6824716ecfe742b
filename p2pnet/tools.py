"""A tiny stand-alone node for multi-process tests and benchmarks: ``python -m p2pnet.tools``.

It prints ``LISTEN <multiaddr>`` once listening, ``STATE <mesh peer ids>`` whenever its mesh for the topic
changes, and ``COUNT <n>`` whenever it has received more messages. It reads commands on stdin:
``PUB <count> <size> <rate>`` (rate 0: as fast as back-pressure allows; prints ``PUBLISHED <count> <seconds>``),
``STATS`` (prints ``STATS <json>``: counts and latencies), ``QUIT``. Each published message carries its sequence
number and ``time.monotonic_ns()`` at publish, which all processes on one machine share, for latency.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import trio

from p2pnet.config import HostConfig
from p2pnet.host import Host
from p2pnet.identity import Identity

_HEADER = struct.Struct(">QQ")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _node(args: argparse.Namespace) -> None:
    cfg = HostConfig.test(target_peers=args.target_peers, max_peers=max(args.target_peers, 16))
    cfg.bootstrap = list(args.bootstrap)
    cfg.discovery = not args.chain
    cfg.idle_timeout = 30.0
    cfg.keepalive_interval = 1.0
    host = Host(Identity.generate(), cfg)
    topic = args.topic
    latencies: list[tuple[int, int]] = []  # (seq, ns from publish to delivery here)
    seen: set[int] = set()
    span = [0, 0]  # first and last delivery, monotonic ns
    async with trio.open_nursery() as nursery:
        inbox = host.gossip.subscribe(topic)
        await nursery.start(host.run)
        _out(f"LISTEN {host.listen_addrs[0]}")
        if args.chain:
            for addr in args.bootstrap:
                await host.dial(addr)

        counted = [0]

        async def receive() -> None:
            while True:
                msg = await inbox.receive()
                now = time.monotonic_ns()
                seq, sent = _HEADER.unpack_from(msg.data)
                if seq not in seen:
                    seen.add(seq)
                    latencies.append((seq, now - sent))
                    span[0] = span[0] or now
                    span[1] = now
                counted[0] += 1

        async def watch() -> None:
            # progress lines at most every 20 ms: a line per message would cost a syscall per message
            last: list[str] = []
            last_count = 0
            while True:
                if counted[0] != last_count:
                    last_count = counted[0]
                    _out(f"COUNT {last_count}")
                mesh = sorted(str(p) for p in host.gossip.mesh.get(topic, ()))
                if mesh != last:
                    last = mesh
                    _out("STATE " + ",".join(mesh))
                await trio.sleep(0.02)

        nursery.start_soon(receive)
        nursery.start_soon(watch)
        stdin = trio.wrap_file(sys.stdin)
        seq = 0
        while True:
            line = await stdin.readline()
            if not line:
                break
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "PUB":
                count, size, rate = int(cmd[1]), int(cmd[2]), float(cmd[3])
                start = trio.current_time()
                start_ns = time.monotonic_ns()
                reached_min = 1 << 30
                for i in range(count):
                    if rate > 0:
                        await trio.sleep_until(start + i / rate)
                    seq += 1
                    data = _HEADER.pack(seq, time.monotonic_ns()).ljust(size, b"\0")
                    reached_min = min(reached_min, await host.gossip.publish(topic, data))
                _out(f"PUBLISHED {count} {trio.current_time() - start:.6f} {reached_min} {start_ns}")
            elif cmd[0] == "STATS":
                stats = {"received": len(seen), "latencies_ns": latencies, "span_ns": span, **host.metrics()}
                _out("STATS " + json.dumps(stats))
            elif cmd[0] == "QUIT":
                break
        nursery.cancel_scope.cancel()


class NodeProcess:
    """A node started with ``python -m p2pnet.tools`` in a child process, as seen from the parent (trio)."""

    def __init__(self, cluster: Cluster, proc: trio.Process) -> None:
        self.cluster = cluster
        self.proc = proc
        self.addr = ""
        self.peer_id = ""
        self.count = 0
        self.mesh: list[str] = []
        self.published: list[str] | None = None
        self.stats: dict | None = None
        self.alive = True

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all((line + "\n").encode())

    async def read_lines(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.proc.stdout is not None
        buf = b""
        started = False
        async for chunk in self.proc.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                kind, _, rest = raw.decode().partition(" ")
                if kind == "LISTEN":
                    self.addr = rest
                    self.peer_id = rest.rsplit("/", 1)[-1]
                elif kind == "COUNT":
                    self.count = int(rest)
                elif kind == "STATE":
                    self.mesh = [p for p in rest.split(",") if p]
                elif kind == "PUBLISHED":
                    self.published = rest.split()
                elif kind == "STATS":
                    self.stats = json.loads(rest)
                if not started and self.addr:
                    started = True
                    task_status.started()
                self.cluster.poke()
        self.alive = False
        self.cluster.poke()
        if not started:
            raise RuntimeError("node exited before printing LISTEN")


class Cluster:
    """Child-process nodes started in a nursery (killed when it exits); ``wait_until`` a condition on them."""

    def __init__(self, nursery: trio.Nursery, node_cmd: list[str] | None = None) -> None:
        self.nursery = nursery
        self.node_cmd = node_cmd if node_cmd is not None else [sys.executable, "-m", "p2pnet.tools"]
        self.nodes: list[NodeProcess] = []
        self._changed = trio.Event()

    def poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def start_node(self, *args: str) -> NodeProcess:
        """Start a node and return once it printed its listen address (no sleeps)."""
        cmd = [*self.node_cmd, *args]
        proc = await self.nursery.start(
            functools.partial(trio.run_process, cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False)
        )
        node = NodeProcess(self, proc)
        await self.nursery.start(node.read_lines)
        self.nodes.append(node)
        return node

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()


def mesh_connected(nodes: list[NodeProcess]) -> bool:
    """True if the nodes' reported gossip meshes link them all into one component."""
    ids = {n.peer_id for n in nodes}
    edges: dict[str, set[str]] = {n.peer_id: set() for n in nodes}
    for n in nodes:
        for p in n.mesh:
            if p in ids:
                edges[n.peer_id].add(p)
                edges[p].add(n.peer_id)
    start = next(iter(ids))
    seen, todo = {start}, [start]
    while todo:
        for q in edges[todo.pop()]:
            if q not in seen:
                seen.add(q)
                todo.append(q)
    return seen == ids and all(n.mesh for n in nodes)


def main(argv: list[str] | None = None) -> None:
    """Run one node until stdin closes or ``QUIT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--target-peers", type=int, default=6)
    parser.add_argument("--chain", action="store_true", help="dial the bootstrap addresses only, no discovery")
    parser.add_argument("--log", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    trio.run(_node, args)


if __name__ == "__main__":
    main()
