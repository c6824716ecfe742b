"""The host's resource manager on loopback (issue 17, cases 5 and 9): request budgets per peer and protocol, slots
per IP, and protected peers that keep a slot, are never pruned and are re-dialed."""

from __future__ import annotations

import contextlib

import pytest
import trio

from p2pnet import Host, HostConfig, Identity, P2PError
from p2pnet.errors import PeerBusy
from p2pnet.resources import RequestBudgets, address_group

from .conftest import running_hosts

PROTO = "/test/echo/1"


async def _echo(peer: object, payload: object) -> bytes:
    return b"x" * 1000


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def _settled(victim: Host, h: Host) -> None:
    """Until the victim has either adopted ``h``'s connection or ``h`` holds none to it (refused or closed)."""
    await _wait_for(lambda: h.peer_id in victim.peers() or victim.peer_id not in h.peers())


def test_budgets_refuse_past_the_burst_and_refill_with_time() -> None:
    b = RequestBudgets(rate=10, burst=5, bytes_rate=1e9, bytes_burst=1e9, busy_strikes=3)
    assert [b.admit(b"p", "s", 0.0) for _ in range(5)] == [None] * 5
    wait = b.admit(b"p", "s", 0.0)
    assert wait == pytest.approx(0.1)
    assert b.admit(b"p", "other", 0.0) is None  # budgets are per protocol
    assert b.admit(b"p", "s", 0.1) is None  # refilled
    assert not b.over_strikes(b"p")  # the in-budget request worked one strike off
    for _ in range(3):
        assert b.admit(b"p", "s", 0.1) is not None
    assert b.over_strikes(b"p")
    b.forget(b"p")
    assert len(b) == 0


def test_bytes_served_count_against_the_byte_budget() -> None:
    b = RequestBudgets(rate=1e6, burst=1e6, bytes_rate=1000, bytes_burst=1000, busy_strikes=10)
    assert b.admit(b"p", "s", 0.0) is None
    b.charge(b"p", "s", 5000, 0.0)  # one big answer: the next requests wait until it is paid off
    assert b.admit(b"p", "s", 1.0) == pytest.approx(3.001, rel=1e-3)
    assert b.admit(b"p", "s", 4.1) is None


def test_address_groups() -> None:
    assert address_group("10.1.2.3") == ("10.1.2.3", "10.1.2.0/24")
    assert address_group("2001:db8::1") == ("2001:db8::1", "2001:db8::/64")
    assert address_group("memory:3") is None


async def test_a_request_flood_is_answered_busy_then_cut_off_and_an_honest_pace_is_served() -> None:
    def cfg(i: int, c: HostConfig) -> None:
        c.request_rate, c.request_burst = 20.0, 20.0

    async with running_hosts(3, cfg) as (victim, honest, flooder):
        victim.set_request_handler(PROTO, _echo)
        await honest.dial(victim.listen_addrs[0])
        await flooder.dial(victim.listen_addrs[0])
        for _ in range(10):  # within the burst: every one served
            assert await honest.request(victim.peer_id, PROTO, None) == b"x" * 1000
        busy = other = served = 0
        in_flight = trio.CapacityLimiter(32)  # under the connection's in-flight cap: the budget is what refuses

        async def one() -> None:
            nonlocal busy, other, served
            async with in_flight:
                await ask()

        async def ask() -> None:
            nonlocal busy, other, served
            try:
                await flooder.request(victim.peer_id, PROTO, None, timeout=5)
                served += 1
            except PeerBusy as exc:
                busy += 1
                assert exc.retry_after_s > 0
            except P2PError:
                other += 1  # cut off while asking

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(one)
        assert served <= 40 and busy >= 20 and served + busy + other == 1000, (served, busy, other)
        await _wait_for(lambda: flooder.peer_id not in victim.peers())
        assert victim.metrics()["requests"]["refused_busy"] >= busy
        # the honest peer is still served
        assert await honest.request(victim.peer_id, PROTO, None) == b"x" * 1000


async def test_strangers_cannot_take_a_protected_peers_slot() -> None:
    validator = Identity.generate()

    def cfg(i: int, c: HostConfig) -> None:
        c.max_inbound = 3

    async with running_hosts(1, cfg) as (victim,), trio.open_nursery() as nursery:
        victim.protect([validator.peer_id])
        strangers = [Host(Identity.generate(), HostConfig.test(target_peers=0)) for _ in range(5)]
        for h in strangers:
            await nursery.start(h.run)
        connected = 0
        for h in strangers:
            with contextlib.suppress(P2PError):
                await h.dial(victim.listen_addrs[0])
            await _settled(victim, h)
            connected += h.peer_id in victim.peers()
        assert connected == 3  # the limit; the reserve slot is not theirs
        assert len(victim.peers()) == 3
        protected = Host(validator, HostConfig.test(target_peers=0))
        await nursery.start(protected.run)
        await protected.dial(victim.listen_addrs[0])
        await _wait_for(lambda: validator.peer_id in victim.peers())
        # pruning over the peer limit never picks the protected peer
        victim._prune_peers(4)
        await _wait_for(lambda: len(victim.peers()) == 1)
        assert victim.peers() == [validator.peer_id]
        nursery.cancel_scope.cancel()


async def test_a_protected_peer_is_redialed_when_its_link_drops() -> None:
    def cfg(i: int, c: HostConfig) -> None:
        c.discovery = False  # no discovery at all: only the protected-peer rule dials

    async with running_hosts(2, cfg) as (a, b):
        await a.dial(b.listen_addrs[0])
        a.protect([b.peer_id])
        conn = a.connection(b.peer_id)
        assert conn is not None
        conn.close("test: link cut")
        await _wait_for(lambda: b.peer_id not in a.peers())
        await _wait_for(lambda: b.peer_id in a.peers(), timeout=10)
        assert a.counters["protected_dials"] >= 1


async def test_per_ip_limit_refuses_the_fifth_connection_from_one_address() -> None:
    def cfg(i: int, c: HostConfig) -> None:
        if i == 0:
            c.limit_loopback, c.max_inbound_per_ip = True, 4

    async with running_hosts(1, cfg) as (victim,), trio.open_nursery() as nursery:
        hosts = [Host(Identity.generate(), HostConfig.test(target_peers=0)) for _ in range(5)]
        for h in hosts:
            await nursery.start(h.run)
        ok = 0
        for h in hosts:
            with contextlib.suppress(P2PError):
                await h.dial(victim.listen_addrs[0])
            await _settled(victim, h)
            ok += h.peer_id in victim.peers()
        assert ok == 4
        assert victim.counters["inbound_refused_address"] >= 1
        nursery.cancel_scope.cancel()
