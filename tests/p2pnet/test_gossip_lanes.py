"""Gossip lanes: a topic subscribed with ``lane=N`` is validated by a worker task of its own, so a costly message
(a batch of signed txs) cannot hold up an urgent one (a vote) that arrives behind it on the same connection; a
full lane sheds new first copies (counted, left unseen so a later copy is still taken)."""

from __future__ import annotations

import trio
import trio.testing

from p2pnet.framing import GossipMessage, GossipRPC
from p2pnet.gossip import ValidationResult

from .fakes import router


async def test_a_slow_laned_topic_does_not_hold_up_the_vote_behind_it() -> None:
    gossip, host = router()
    release = trio.Event()
    checked: list[bytes] = []

    async def slow(peer, data: bytes) -> ValidationResult:
        await release.wait()  # a costly check still running
        checked.append(data)
        return ValidationResult.ACCEPT

    txs = gossip.subscribe("txs", slow, lane=8)
    votes = gossip.subscribe("votes")
    peer = host.connect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gossip.run)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            await gossip.handle_rpc(peer, GossipRPC(messages=[GossipMessage("txs", b"batch"),
                                                              GossipMessage("votes", b"prevote")]))
        # the reader is free again and the vote is through while the batch is still being checked
        assert votes.receive_nowait().data == b"prevote" and checked == []
        release.set()
        with trio.fail_after(5):
            got = await txs.receive()
        assert got.data == b"batch" and got.source == peer and checked == [b"batch"]
        assert gossip.counters["txs"].delivered == 1 and gossip.counters["txs"].shed == 0
        nursery.cancel_scope.cancel()


async def test_a_full_lane_sheds_new_copies_and_a_later_copy_is_still_taken() -> None:
    gossip, host = router()
    release = trio.Event()

    async def slow(peer, data: bytes) -> ValidationResult:
        await release.wait()
        return ValidationResult.ACCEPT

    inbox = gossip.subscribe("txs", slow, lane=2)
    a, b = host.connect(), host.connect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gossip.run)
        await trio.testing.wait_all_tasks_blocked()
        # one in the worker's hands, two queued, the rest shed
        await gossip.handle_rpc(a, GossipRPC(messages=[GossipMessage("txs", b"m%d" % i) for i in range(6)]))
        await trio.testing.wait_all_tasks_blocked()
        c = gossip.counters["txs"]
        assert c.shed >= 3 and c.received + c.shed == 6 and c.duplicates == 0
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert c.delivered == c.received
        # a shed message was not marked seen: another peer's copy is validated and delivered
        shed_one = b"m5"
        await gossip.handle_rpc(b, GossipRPC(messages=[GossipMessage("txs", shed_one)]))
        await trio.testing.wait_all_tasks_blocked()
        got = [inbox.receive_nowait().data for _ in range(c.delivered)]
        assert shed_one in got and c.duplicates == 0
        # nobody is blamed for our overload
        assert gossip.score(a) >= 0 and gossip.score(b) >= 0
        gossip.unsubscribe("txs")  # the lane's worker ends with its subscription
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
