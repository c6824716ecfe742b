"""Per-peer, per-topic rate caps on first copies: beyond a topic's cap in a heartbeat a message is dropped before
its validator runs, counted, and left unseen (an honest copy from another peer is still taken); an excess that
persists for ``rate_limit_grace`` heartbeats is a behaviour penalty each heartbeat after."""

from __future__ import annotations

import pytest

from p2pnet.config import GossipConfig
from p2pnet.errors import ConfigError
from p2pnet.framing import GossipMessage, GossipRPC
from p2pnet.gossip import ValidationResult

from .fakes import router

TOPIC = "t"


def msgs(n: int, tag: str) -> list[GossipMessage]:
    return [GossipMessage(TOPIC, f"{tag}{i}".encode()) for i in range(n)]


async def test_first_copies_beyond_the_cap_are_dropped_before_validation_and_counted() -> None:
    gossip, host = router(GossipConfig(topic_caps={TOPIC: 5}))
    calls: list[bytes] = []

    def validator(peer, data: bytes) -> ValidationResult:
        calls.append(data)
        return ValidationResult.ACCEPT

    inbox = gossip.subscribe(TOPIC, validator)
    flooder, honest = host.connect(), host.connect()
    burst = msgs(8, "m")
    await gossip.handle_rpc(flooder, GossipRPC(messages=burst))
    assert len(calls) == 5 and gossip.counters[TOPIC].rate_limited == 3
    # the three dropped were not marked seen: the honest peer's copies are validated and delivered
    await gossip.handle_rpc(honest, GossipRPC(messages=burst[5:]))
    assert len(calls) == 8 and gossip.counters[TOPIC].duplicates == 0
    assert sorted(inbox.receive_nowait().data for _ in range(8)) == sorted(m.data for m in burst)
    # another topic has its own budget (the default)
    assert gossip.config.topic_cap("other") == GossipConfig().default_topic_cap
    gossip.heartbeat()  # a new heartbeat, a new budget
    await gossip.handle_rpc(flooder, GossipRPC(messages=msgs(5, "n")))
    assert len(calls) == 13 and gossip.counters[TOPIC].rate_limited == 3


async def test_a_burst_is_no_offence_a_persistent_excess_is_penalised() -> None:
    gossip, host = router(GossipConfig(topic_caps={TOPIC: 10}, rate_limit_grace=2))
    gossip.subscribe(TOPIC)
    bursty, persistent = host.connect(), host.connect()
    await gossip.handle_rpc(bursty, GossipRPC(messages=msgs(20, "b")))
    for beat in range(4):
        await gossip.handle_rpc(persistent, GossipRPC(messages=msgs(20, f"p{beat}-")))
        gossip.heartbeat()
    assert gossip.scores[bursty].behaviour == 0 and gossip.score(bursty) > 0
    # over the cap in heartbeats 1..4: the 2nd, 3rd and 4th in a row are penalised (decayed in between)
    assert gossip.scores[persistent].behaviour == pytest.approx(1 + 0.95 + 0.95**2)
    assert gossip.score(persistent) < 0
    await gossip.handle_rpc(persistent, GossipRPC(messages=msgs(5, "q")))
    gossip.heartbeat()  # back under the cap: the streak ends
    assert gossip.scores[persistent].rate_strikes == 0


def test_the_default_cap_is_far_above_honest_load() -> None:
    """The devnet's ~4,000 tx/s, even one tx per message on dacn/tx/1 and all of it from a single peer, is a fifth
    of the default per heartbeat (1 s); in batches of 256 on dacn/txs/1 it is some 16 messages."""
    cfg = GossipConfig()
    per_heartbeat = 4_000 * cfg.heartbeat_interval
    assert cfg.topic_cap("dacn/tx/1") >= 5 * per_heartbeat
    assert cfg.topic_cap("dacn/txs/1") >= 1000 * per_heartbeat / 256


@pytest.mark.parametrize("bad", [{"default_topic_cap": 0}, {"topic_caps": {"t": 0}}, {"topic_caps": {"": 5}},
                                 {"topic_caps": {"t": 1.5}}, {"rate_limit_grace": 0}])
def test_rate_cap_settings_are_validated(bad: dict) -> None:
    with pytest.raises(ConfigError):
        GossipConfig(**bad).validate()
    GossipConfig(topic_caps={"t": 1}).validate()
