"""IHAVE floods and broken IWANT promises are behaviour penalties (gossipsub v1.1's P7), on one router driven by
hand over a fake host: pre (a peer and what it advertised) → operation (RPCs, heartbeats) → post (score)."""

from __future__ import annotations

import pytest

from p2pnet.config import GossipConfig
from p2pnet.errors import ConfigError
from p2pnet.framing import GossipMessage, GossipRPC
from p2pnet.gossip import message_id

from .fakes import router

TOPIC = "t"


def ids(n: int, tag: str = "x") -> list[bytes]:
    return [message_id(TOPIC, f"{tag}{i}".encode()) for i in range(n)]


def asked(host, peer) -> list[bytes]:
    return [mid for rpc in host._connections[peer].sent for mid in rpc.iwant]


async def test_a_peer_advertising_more_than_max_ihave_ids_a_heartbeat_is_penalised_and_not_asked() -> None:
    gossip, host = router(GossipConfig(max_ihave_ids=100))
    gossip.subscribe(TOPIC)
    flooder, honest = host.connect(), host.connect()
    # an honest peer advertises at most half the bound per heartbeat: two of its heartbeats in one of ours pass
    for tag in ("a", "b"):
        await gossip.handle_rpc(honest, GossipRPC(ihave=[(TOPIC, ids(50, tag))]))
    assert gossip.score(honest) == 0 and len(asked(host, honest)) == 100
    # the flooder: 100 ids pass, the next ones cross the bound (1), and each further 100 adds 1 more
    await gossip.handle_rpc(flooder, GossipRPC(ihave=[(TOPIC, ids(60, "c")), ("other", ids(60, "d"))]))
    assert gossip.scores[flooder].behaviour == 1.0 and len(asked(host, flooder)) == 60
    await gossip.handle_rpc(flooder, GossipRPC(ihave=[(TOPIC, ids(200, "e"))]))
    assert gossip.scores[flooder].behaviour == 3.0 and len(asked(host, flooder)) == 60  # budget spent: none
    assert gossip.score(flooder) < 0 and gossip.ihave_floods == 2
    gossip.heartbeat()  # a new heartbeat, a new budget; the flooder is below the gossip threshold, not heard
    for p in (honest, flooder):
        await gossip.handle_rpc(p, GossipRPC(ihave=[(TOPIC, ids(100, "f"))]))
    assert len(asked(host, honest)) == 200 and len(asked(host, flooder)) == 60
    assert gossip.score(honest) == 0


async def test_we_advertise_at_most_half_the_bound_per_peer_and_heartbeat_over_all_topics() -> None:
    gossip, host = router(GossipConfig(max_ihave_ids=100))
    peers = [host.connect() for _ in range(3)]
    for topic in ("t1", "t2"):
        gossip.subscribe(topic)
        for p in peers:
            gossip._on_subscription(p, topic, True)
        for i in range(80):
            await gossip.publish(topic, b"%d" % i)
    for p in peers:
        host._connections[p].sent.clear()
    gossip.heartbeat()
    for p in peers:
        advertised = [mid for rpc in host._connections[p].sent for _, mids in rpc.ihave for mid in mids]
        assert 0 < len(advertised) <= 50


async def test_an_iwant_promise_not_kept_by_its_deadline_is_a_behaviour_penalty() -> None:
    """The peer advertised, we asked; it has ``iwant_followup`` heartbeats. A peer that delivers (or whose
    message someone else delivers first) is not penalised; one that never delivers is, once per IWANT."""
    gossip, host = router(GossipConfig(iwant_followup=3, broken_promise_penalty=0.5))
    gossip.subscribe(TOPIC)
    liar, honest, other = host.connect(), host.connect(), host.connect()
    real = [GossipMessage(TOPIC, b"real-%d" % i) for i in range(4)]
    await gossip.handle_rpc(liar, GossipRPC(ihave=[(TOPIC, ids(20, "fake"))]))
    await gossip.handle_rpc(honest, GossipRPC(ihave=[(TOPIC, [message_id(TOPIC, m.data) for m in real[:2]])]))
    await gossip.handle_rpc(other, GossipRPC(ihave=[(TOPIC, [message_id(TOPIC, real[2].data)])]))
    assert len(gossip.promises) == 3
    await gossip.handle_rpc(honest, GossipRPC(messages=real[:2]))  # kept
    await gossip.handle_rpc(liar, GossipRPC(messages=[real[2]]))  # someone else delivered what `other` promised
    for _ in range(3):
        gossip.heartbeat()
        assert gossip.scores[liar].behaviour == 0
    gossip.heartbeat()  # past the deadline
    assert gossip.scores[liar].behaviour == pytest.approx(0.5) and gossip.promises_broken == 1
    assert gossip.score(liar) < 0 <= gossip.score(honest) and gossip.score(other) >= 0
    assert not gossip.promises and gossip._promise_count == 0


async def test_the_promise_table_is_bounded() -> None:
    gossip, host = router(GossipConfig(max_promises=10))
    gossip.subscribe(TOPIC)
    peers = [host.connect() for _ in range(5)]
    for i in range(200):
        await gossip.handle_rpc(peers[i % 5], GossipRPC(ihave=[(TOPIC, ids(3, f"m{i}-"))]))
    assert gossip._promise_count == sum(len(p) for p in gossip.promises.values()) == 10
    for _ in range(5):
        gossip.heartbeat()
    assert gossip.promises_broken == 10 and not gossip.promises  # only what was remembered is judged


def test_promise_and_ihave_settings_are_validated() -> None:
    for bad in ({"max_ihave_ids": 1}, {"iwant_followup": 0}, {"max_promises": 0}, {"broken_promise_penalty": -1}):
        with pytest.raises(ConfigError):
            GossipConfig(**bad).validate()  # type: ignore[arg-type]
