"""Ten nodes in ten processes on loopback, chained only through bootstrap addresses."""

import pytest
import trio

from p2pnet.tools import Cluster, mesh_connected

pytestmark = pytest.mark.slow


async def test_ten_processes_deliver_everything_and_survive_a_kill() -> None:
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            cluster = Cluster(nursery)
            try:
                first = await cluster.start_node("--target-peers", "4")
                for _ in range(9):
                    await cluster.start_node("--target-peers", "4", "--bootstrap", cluster.nodes[-1].addr)
                nodes = cluster.nodes
                await cluster.wait_until(lambda: mesh_connected(nodes), timeout=30)

                await first.send("PUB 500 300 0")
                await cluster.wait_until(lambda: all(n.count >= 500 for n in nodes[1:]), timeout=30)

                victim = nodes[5]
                victim.proc.kill()
                rest = [n for n in nodes if n is not victim]
                await cluster.wait_until(
                    lambda: mesh_connected(rest) and not any(victim.peer_id in n.mesh for n in rest), timeout=30
                )
                await first.send("PUB 500 300 0")
                await cluster.wait_until(lambda: all(n.count >= 1000 for n in rest[1:]), timeout=30)

                for n in rest:
                    await n.send("STATS")
                await cluster.wait_until(lambda: all(n.stats is not None for n in rest), timeout=10)
                for n in rest[1:]:
                    assert n.stats["received"] == 1000
                    assert n.count == 1000  # every delivery unique: duplicates stop at the seen-cache
                assert first.published is not None and int(first.published[2]) >= 1
            finally:
                for n in cluster.nodes:
                    if n.proc.returncode is None:
                        n.proc.kill()
                nursery.cancel_scope.cancel()
