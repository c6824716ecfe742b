"""Hostile peers on loopback: each is cut off with a logged reason, honest traffic goes on, no task is left."""

import logging
import os

import pytest
import trio
import trio.testing

from p2pnet import HostConfig, Identity, ValidationResult
from p2pnet.connection import NoiseTransport
from p2pnet.discovery import MAX_PER_SOURCE
from p2pnet.framing import GossipMessage, GossipRPC, Request, encode_message, join_frames
from p2pnet.identity import encode_public_key_protobuf
from p2pnet.noise import NoiseHandshake, NoiseSession

from .conftest import running_hosts


def _task_count() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def _secure(addr, handshake: NoiseHandshake) -> tuple[trio.SocketStream, NoiseSession]:
    stream = await trio.open_tcp_stream(addr.host, addr.port)
    while True:
        out = handshake.bytes_to_send()
        if out:
            await stream.send_all(out)
        if handshake.complete:
            return stream, handshake.session()
        data = await stream.receive_some(65536)
        assert data, "victim closed during handshake"
        handshake.receive_data(data)


async def _honest_round_trip(a, b) -> None:
    assert await a.request(b.peer_id, "/dacn/px/1", None, timeout=2.0) is not None


def _victim_and_honest(i: int, cfg: HostConfig) -> None:
    cfg.write_timeout = 0.5
    cfg.request_rate = cfg.request_burst = 1e9  # the slow reader, not the request budget, is under test here


async def test_random_bytes_are_cut_off(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with running_hosts(2) as (victim, honest):
        await honest.dial(victim.listen_addrs[0])
        baseline = _task_count()
        addr = victim.listen_addrs[0]
        stream = await trio.open_tcp_stream(addr.host, addr.port)
        await stream.send_all(b"\x00\x20" + os.urandom(32) + os.urandom(200))
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass  # the victim's first handshake message, then EOF
        await stream.aclose()
        assert "inbound handshake" in caplog.text and "failed" in caplog.text
        await _honest_round_trip(honest, victim)
        await _wait_for(lambda: _task_count() <= baseline)


async def test_forged_identity_signature_is_refused(caplog) -> None:
    caplog.set_level(logging.INFO)
    mallory, claimed = Identity.generate(), Identity.generate()

    class Forger(NoiseHandshake):
        def _prove(self) -> bytes:
            key = encode_public_key_protobuf(claimed.public_key)  # claims someone else's key
            sig = mallory.sign(b"noise-libp2p-static-key:" + self._static_public)
            return bytes([0x0A, len(key)]) + key + bytes([0x12, len(sig)]) + sig

    async with running_hosts(2) as (victim, honest):
        await honest.dial(victim.listen_addrs[0])
        stream, _ = await _secure(victim.listen_addrs[0], Forger(mallory, initiator=True))
        with trio.fail_after(5):
            assert await stream.receive_some(100) == b""
        assert "did not sign the Noise static key" in caplog.text
        assert claimed.peer_id not in victim.peers()
        await _honest_round_trip(honest, victim)


@pytest.mark.parametrize("attack", ["oversized", "truncated", "garbage frame"])
async def test_bad_frames_close_and_ban(caplog, attack: str) -> None:
    caplog.set_level(logging.INFO)
    mallory = Identity.generate()
    async with running_hosts(2) as (victim, honest):
        await honest.dial(victim.listen_addrs[0])
        baseline = _task_count()
        stream, session = await _secure(victim.listen_addrs[0], NoiseHandshake(mallory, initiator=True))
        await _wait_for(lambda: mallory.peer_id in victim.peers())
        if attack == "oversized":
            await stream.send_all(session.encrypt((victim.config.max_frame + 1).to_bytes(4, "big") + b"x" * 100))
            expected = "FrameTooLarge"
        elif attack == "truncated":
            frame = join_frames([encode_message(Request(1, "/dacn/px/1", None))])
            await stream.send_all(session.encrypt(frame[:-2]))
            await stream.send_eof() if hasattr(stream, "send_eof") else None
            expected = "TruncatedFrame"
        else:
            await stream.send_all(session.encrypt(join_frames([b"\xc1garbage"])))
            expected = "ProtocolError"
        await _wait_for(lambda: mallory.peer_id not in victim.peers())
        assert expected in caplog.text
        assert victim.is_banned(mallory.peer_id)
        await stream.aclose()
        await _honest_round_trip(honest, victim)
        await _wait_for(lambda: _task_count() <= baseline)


async def test_flood_of_invalid_gossip_gets_sender_disconnected(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with running_hosts(3) as (victim, honest, mallory):
        inbox = victim.gossip.subscribe(
            "t", lambda peer, data: ValidationResult.REJECT if data.startswith(b"bad") else ValidationResult.ACCEPT
        )
        honest.gossip.subscribe("t")
        await honest.dial(victim.listen_addrs[0])
        await mallory.dial(victim.listen_addrs[0])
        conn = mallory.connection(victim.peer_id)
        for i in range(200):
            rpc = GossipRPC(messages=[GossipMessage("t", b"bad %d" % i)])
            if not conn.try_send_encoded(encode_message(rpc)):
                break
        await _wait_for(lambda: mallory.peer_id not in victim.peers())
        assert victim.is_banned(mallory.peer_id)
        assert "banning" in caplog.text and "gossip score" in caplog.text
        invalid = victim.gossip.counters["t"].invalid
        assert 0 < invalid < 200
        await _wait_for(lambda: honest.peer_id in victim.gossip.mesh.get("t", ()))
        assert await honest.gossip.publish("t", b"good") >= 1
        with trio.fail_after(5):
            assert (await inbox.receive()).data == b"good"


async def test_slow_reader_is_cut_off_and_others_continue(caplog) -> None:
    caplog.set_level(logging.INFO)
    mallory = Identity.generate()
    async with running_hosts(2, _victim_and_honest) as (victim, honest):
        await honest.dial(victim.listen_addrs[0])
        digest = victim.provide_blob(os.urandom(64 * 1024))
        stream, session = await _secure(victim.listen_addrs[0], NoiseHandshake(mallory, initiator=True))
        await _wait_for(lambda: mallory.peer_id in victim.peers())
        # keep asking for 64 kB replies and never read them, until the victim hangs up

        async def flood() -> None:
            rid = 0
            try:
                while True:
                    frames = []
                    for _ in range(20):
                        rid += 1
                        frames.append(encode_message(Request(rid, "/dacn/blob/1", {"d": digest, "o": 0})))
                    await stream.send_all(session.encrypt(join_frames(frames)))
                    await trio.sleep(0.01)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            with trio.fail_after(15):
                while mallory.peer_id in victim.peers():
                    await _honest_round_trip(honest, victim)  # honest traffic keeps flowing meanwhile
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert "slow reader" in caplog.text
        await stream.aclose()


def _short_timeouts(i: int, cfg: HostConfig) -> None:
    cfg.handshake_timeout = 0.3
    cfg.idle_timeout = 0.6
    cfg.keepalive_interval = 0.2


async def test_silent_connection_hits_the_handshake_timeout(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with running_hosts(1, _short_timeouts) as (victim,):
        addr = victim.listen_addrs[0]
        stream = await trio.open_tcp_stream(addr.host, addr.port)
        with trio.fail_after(3):
            while await stream.receive_some(65536):
                pass  # nothing to send back: the victim gives up and closes
        assert "HandshakeTimeout" in caplog.text or "handshake not finished" in caplog.text
        await stream.aclose()


async def test_mute_peer_is_closed_as_idle(caplog) -> None:
    caplog.set_level(logging.INFO)
    mallory = Identity.generate()
    async with running_hosts(1, _short_timeouts) as (victim,):
        stream, _ = await _secure(victim.listen_addrs[0], NoiseHandshake(mallory, initiator=True))
        await _wait_for(lambda: mallory.peer_id in victim.peers())
        await _wait_for(lambda: mallory.peer_id not in victim.peers(), timeout=5)
        assert "idle for over" in caplog.text
        assert not victim.is_banned(mallory.peer_id)  # quiet is not hostile
        await stream.aclose()


async def test_a_low_order_ephemeral_key_closes_one_stream_not_the_host(caplog) -> None:
    """Noise message 1 carrying a small-order X25519 key once took the whole node down (the responder's DH raised
    a bare ValueError out of the connection's task)."""
    caplog.set_level(logging.INFO)
    async with running_hosts(2) as (victim, honest):
        addr = victim.listen_addrs[0]
        for point in (bytes(32), b"\x01" + bytes(31), b"\xec" + b"\xff" * 30 + b"\x7f"):
            stream = await trio.open_tcp_stream(addr.host, addr.port)
            await stream.send_all(b"\x00\x20" + point)
            with trio.fail_after(5):
                while await stream.receive_some(65536):
                    pass  # refused: EOF without an answer
            await stream.aclose()
        assert "low-order" in caplog.text
        await honest.dial(addr)
        await _honest_round_trip(honest, victim)


async def test_closing_an_already_closed_connection_gracefully_is_quiet() -> None:
    """Pruning may pick a connection the remote is closing at that moment: a graceful close of a closed
    connection must neither raise nor send."""
    async with running_hosts(2) as (a, b):
        await a.dial(b.listen_addrs[0])
        conn = a.connection(b.peer_id)
        assert conn is not None
        conn.close("the remote left first")
        await conn.close_gracefully("pruned: over the peer limit")
        await conn.close_gracefully("pruned again")
        assert conn.close_reason == "the remote left first"


async def test_frames_in_the_same_read_as_noise_message_3_are_handled_at_once() -> None:
    """A peer that sends its first frames together with the last handshake message must not wait for its next
    write to be heard (and must not be banned if it then closes)."""
    i = NoiseHandshake(Identity.generate(), initiator=True)
    r = NoiseHandshake(Identity.generate(), initiator=False)
    r.receive_data(i.bytes_to_send())
    i.receive_data(r.bytes_to_send())
    frame = encode_message(Request(1, "/dacn/px/1", None))
    r.receive_data(i.bytes_to_send() + i.session().encrypt(join_frames([frame])))
    assert r.complete
    _, quiet = trio.testing.memory_stream_pair()  # the remote sends nothing more
    transport = NoiseTransport(quiet, r.session(), max_frame=1 << 20)
    with trio.fail_after(2):
        assert await transport.receive_frames() == [frame]


async def test_a_prune_flood_of_fake_peers_adds_at_most_one_sources_share() -> None:
    """One RPC pruning 50 topics with 64 fake peers each once put 3,200 entries in the victim's table (and a
    scan of the whole table per eviction on its event loop)."""
    async with running_hosts(2) as (victim, mallory):
        await mallory.dial(victim.listen_addrs[0])
        conn = mallory.connection(victim.peer_id)
        assert conn is not None
        fake = [(Identity.generate().peer_id.to_bytes(), ["/ip4/10.66.0.1/tcp/4001"]) for _ in range(64)]
        for round_ in range(3):
            rpc = GossipRPC(prune=[(f"topic-{round_}-{i}", fake) for i in range(50)])
            await conn.send_encoded(encode_message(rpc))
        await _wait_for(lambda: victim.peer_table.source_full(mallory.peer_id) or False, timeout=5)
        await _honest_round_trip(mallory, victim)  # every RPC above has been handled by now
        learned = [p for p in victim.peer_table.records if p != mallory.peer_id]
        assert len(learned) == MAX_PER_SOURCE


async def test_a_peer_replaying_one_message_is_penalised_and_cut_off(caplog) -> None:
    """Issue 17, case 7: duplicates cost nothing (8.5 million left the sender with a positive score). An honest
    peer sends a message once; thousands of copies in a heartbeat are a behaviour penalty, then a ban."""
    caplog.set_level(logging.INFO)
    async with running_hosts(3) as (victim, honest, mallory):
        inbox = victim.gossip.subscribe("t")
        honest.gossip.subscribe("t")
        mallory.gossip.subscribe("t")
        await honest.dial(victim.listen_addrs[0])
        await mallory.dial(victim.listen_addrs[0])
        conn = mallory.connection(victim.peer_id)
        assert conn is not None
        frame = encode_message(GossipRPC(messages=[GossipMessage("t", b"the same bytes")]))
        for _ in range(3000):
            if conn.close_reason is not None or not conn.try_send_encoded(frame):
                await trio.sleep(0)
        await _wait_for(lambda: mallory.peer_id not in victim.peers())
        assert victim.is_banned(mallory.peer_id) and "duplicate messages" in caplog.text
        with trio.fail_after(5):
            assert (await inbox.receive()).data == b"the same bytes"  # the first copy was delivered, once
        await _wait_for(lambda: honest.peer_id in victim.gossip.mesh.get("t", ()))
        assert await honest.gossip.publish("t", b"good") >= 1
        with trio.fail_after(5):
            assert (await inbox.receive()).data == b"good"
