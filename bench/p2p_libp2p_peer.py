"""The benchmark node of ``bench.p2p_chain`` on py-libp2p, for the side-by-side ratio.

Run under a virtualenv with ``libp2p`` installed (not the project's): it speaks the same stdin/stdout lines as
``python -m p2pnet.tools`` (LISTEN, STATE, COUNT, PUBLISHED, STATS; commands PUB, STATS, QUIT), with gossipsub at
D=6, D_lo=4, D_hi=12, a 1 s heartbeat, libp2p's default message signing, and its per-topic spam limit switched
off (it would cap the publisher at 10 msg/s).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

import multiaddr
import trio
from libp2p import generate_new_ed25519_identity, new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

_HEADER = struct.Struct(">QQ")
PROTOCOL = "/meshsub/1.0.0"


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _node(args: argparse.Namespace) -> None:
    host = new_host(key_pair=generate_new_ed25519_identity())
    gossipsub = GossipSub(
        protocols=[PROTOCOL],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub)
    topic = args.topic
    listen = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{_free_port()}")
    latencies: list[tuple[int, int]] = []
    seen: set[int] = set()
    span = [0, 0]
    counted = [0]
    async with (
        host.run(listen_addrs=[listen]),
        trio.open_nursery() as nursery,
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        sub = await pubsub.subscribe(topic)
        _out(f"LISTEN {listen}/p2p/{host.get_id().to_string()}")
        for addr in args.bootstrap:
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))

        async def receive() -> None:
            while True:
                msg = await sub.get()
                now = time.monotonic_ns()
                seq, sent = _HEADER.unpack_from(msg.data)
                if seq not in seen:
                    seen.add(seq)
                    latencies.append((seq, now - sent))
                    span[0] = span[0] or now
                    span[1] = now
                counted[0] += 1

        async def watch() -> None:
            last: list[str] = []
            last_count = 0
            while True:
                if counted[0] != last_count:
                    last_count = counted[0]
                    _out(f"COUNT {last_count}")
                mesh = sorted(p.to_string() for p in gossipsub.mesh.get(topic, ()))
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
                for i in range(count):
                    if rate > 0:
                        await trio.sleep_until(start + i / rate)
                    seq += 1
                    await pubsub.publish(topic, _HEADER.pack(seq, time.monotonic_ns()).ljust(size, b"\0"))
                _out(f"PUBLISHED {count} {trio.current_time() - start:.6f} 1 {start_ns}")
            elif cmd[0] == "STATS":
                _out("STATS " + json.dumps({"received": len(seen), "latencies_ns": latencies, "span_ns": span}))
            elif cmd[0] == "QUIT":
                break
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--target-peers", type=int, default=6)
    parser.add_argument("--chain", action="store_true")
    args = parser.parse_args()
    trio.run(_node, args)


if __name__ == "__main__":
    main()
