"""A gossipsub-like router: per-topic meshes (D, D_lo, D_hi), fanout, a seen-cache, IHAVE/IWANT repair,
validate-before-forward, and peer scores with gossip / publish / graylist / disconnect thresholds.

Messages are not signed by their author: every application payload we gossip (transactions, blocks, votes) is
signed by the application, and every hop is authenticated by Noise, so a per-message signature would only halve
throughput. The message id is BLAKE2b-160 of topic and data, so the same payload published twice is one message.

Why this file is long: the router's state (meshes, fanout, seen-cache, message cache, IWANT promises, scores,
per-topic rate caps and lanes) is read and written by every handler and by the heartbeat; split across modules,
each piece would need the whole router's state anyway.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from p2pnet.config import GossipConfig
from p2pnet.connection import Connection
from p2pnet.errors import LocalProtocolError
from p2pnet.framing import GossipMessage, GossipRPC, Message
from p2pnet.identity import PeerId

log = logging.getLogger("p2pnet.gossip")


class GossipHost(Protocol):
    """What the router needs of the host it runs in (``p2pnet.host.Host``): its live connections, frame encoding,
    bans and peer exchange. Named here so the router does not import the host, which imports the router."""

    _connections: dict[PeerId, Connection]

    def _encode(self, msg: Message) -> bytes: ...

    def ban(self, peer: PeerId, reason: str, duration: float | None = None) -> None: ...

    def _px_entries(self, exclude: PeerId | None, limit: int) -> list[tuple[bytes, list[str]]]: ...

    def _learn_peers(self, entries: list[Any], source: PeerId, via: str) -> int: ...


class ValidationResult(enum.Enum):
    """What the application says about a message: forward it, drop it quietly, or drop it and blame the sender."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


Validator = Callable[[PeerId, bytes], "ValidationResult | Awaitable[ValidationResult]"]


@dataclass(frozen=True, slots=True)
class Received:
    """A validated message handed to a subscriber: topic, data, id, and the peer it came from."""

    topic: str
    data: bytes
    message_id: bytes
    source: PeerId


@dataclass
class TopicCounters:
    """Per-topic counters: in (first copies), out (frames queued), dropped, invalid, ignored, duplicates, and first
    copies dropped unvalidated because their sender was over its rate cap for the topic."""

    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    invalid: int = 0
    ignored: int = 0
    published: int = 0
    sent: int = 0
    dropped: int = 0
    shed: int = 0  # first copies on a laned topic dropped because its queue was full (overload)
    rate_limited: int = 0


@dataclass
class PeerScore:
    """Counters behind one peer's score; decayed every heartbeat."""

    first_deliveries: float = 0.0
    invalid: float = 0.0
    behaviour: float = 0.0
    mesh_failures: float = 0.0
    mesh_deliveries: dict[str, int] = field(default_factory=dict)
    mesh_since: dict[str, int] = field(default_factory=dict)
    iwant_served: int = 0
    duplicates: int = 0  # copies of already-seen messages sent to us this heartbeat
    ihave_ids: int = 0  # ids advertised to us by IHAVE this heartbeat
    first_copies: dict[str, int] = field(default_factory=dict)  # per topic, this heartbeat (rate caps)
    rate_limited: int = 0  # first copies dropped over a cap this heartbeat
    rate_strikes: int = 0  # heartbeats in a row with some dropped


def message_id(topic: str, data: bytes) -> bytes:
    """The id of a message: BLAKE2b-160 over topic and data."""
    h = hashlib.blake2b(digest_size=20)
    h.update(topic.encode())
    h.update(b"\0")
    h.update(data)
    return h.digest()


class _Subscription:
    def __init__(self, validator: Validator | None, size: int, lane: int = 0) -> None:
        self.validator = validator
        self.send, self.receive = trio.open_memory_channel[Received](size)
        # A lane: first copies wait here for a worker task that validates them, instead of being validated on
        # the reader task of the connection they came on (see ``Gossip.subscribe``).
        self.lane_send: trio.MemorySendChannel[tuple[PeerId, GossipMessage, bytes]] | None = None
        self.lane_receive: trio.MemoryReceiveChannel[tuple[PeerId, GossipMessage, bytes]] | None = None
        if lane > 0:
            self.lane_send, self.lane_receive = trio.open_memory_channel(lane)


class Gossip:
    """The gossip router of one Host. ``subscribe`` and ``publish`` are the application's entry points."""

    def __init__(self, host: GossipHost, config: GossipConfig, rng: random.Random) -> None:
        self.host = host
        self.config = config
        self.rng = rng
        self.subscriptions: dict[str, _Subscription] = {}
        self.peer_topics: dict[PeerId, set[str]] = {}
        self.mesh: dict[str, set[PeerId]] = {}
        self.fanout: dict[str, set[PeerId]] = {}
        self.fanout_last: dict[str, float] = {}
        self.backoff: dict[tuple[str, PeerId], float] = {}
        self.seen: OrderedDict[bytes, float] = OrderedDict()
        self.mcache: dict[bytes, GossipMessage] = {}
        self.windows: list[list[tuple[bytes, str]]] = [[]]
        self.scores: dict[PeerId, PeerScore] = {}
        self.counters: dict[str, TopicCounters] = {}
        self.topic_volume: dict[str, int] = {}
        self._new_this_heartbeat = 0  # message ids first seen in this heartbeat, and in the one before
        self._new_last_heartbeat = 0
        self.heartbeats = 0
        self.graylisted_rpcs = 0
        self.seen_evicted = 0
        self.iwant_sent = 0  # ids asked for after an IHAVE: the repair path at work
        self.iwant_served = 0
        self._nursery: trio.Nursery | None = None  # while ``run`` runs: where lane workers are started
        # IWANT promises (gossipsub v1.1): for each IWANT we send, one of its ids (drawn at random, so a peer
        # cannot tell which) -> the peers asked for it and the heartbeat by which each must have delivered it.
        # Oldest first; at most ``max_promises`` entries (the oldest go unjudged), so memory stays bounded.
        self.promises: OrderedDict[bytes, dict[PeerId, int]] = OrderedDict()
        self._promise_count = 0
        self.promises_broken = 0
        self.ihave_floods = 0

    # --- application API ------------------------------------------------------------------------------------

    def subscribe(self, topic: str, validator: Validator | None = None, *,
                  lane: int = 0) -> trio.MemoryReceiveChannel[Received]:
        """Join ``topic``; validated messages arrive on the returned channel (bounded: a slow reader pushes
        back on the peers feeding it). ``validator(source, data)`` may be sync or async.

        ``lane > 0``: the topic's first copies are validated by a worker task of their own, in a queue of ``lane``
        messages, not on the reader of the connection they arrived on. A costly topic (signed tx batches) then
        cannot hold up a cheap, urgent one (consensus votes) that arrives behind it on the same connection, and
        when the queue is full a new message is shed (counted in ``shed``, left unseen so a later copy may
        still be taken): under overload the node drops gossip it has no time to check rather than fall behind
        on consensus. Nothing accepted is lost by it: the node that admitted a tx keeps and re-gossips it."""
        if not topic or len(topic) > 256:
            raise LocalProtocolError(f"topic must be 1..256 characters, got {len(topic)}")
        if topic in self.subscriptions:
            raise LocalProtocolError(f"already subscribed to {topic!r}")
        sub = _Subscription(validator, self.config.subscription_queue, lane)
        self.subscriptions[topic] = sub
        if sub.lane_receive is not None and self._nursery is not None:
            self._nursery.start_soon(self._lane_worker, topic, sub)
        self._counters(topic)
        mesh = self.mesh.setdefault(topic, set())
        # join: take fanout peers first, then any subscribed peer
        candidates = list(self.fanout.pop(topic, set()))
        candidates += [p for p in self._topic_peers(topic) if p not in candidates]
        for p in candidates[: self.config.D]:
            if self.score(p) >= 0:
                mesh.add(p)
        self._broadcast(GossipRPC(subscriptions=[(topic, True)]))
        for p in mesh:
            self._send_rpc(p, GossipRPC(graft=[topic]))
        return sub.receive

    def unsubscribe(self, topic: str) -> None:
        """Leave ``topic``: prune the mesh and tell every peer."""
        sub = self.subscriptions.pop(topic, None)
        if sub is None:
            return
        sub.send.close()
        if sub.lane_send is not None:
            sub.lane_send.close()
        for p in self.mesh.pop(topic, set()):
            self._send_rpc(p, GossipRPC(prune=[(topic, [])]))
        self._broadcast(GossipRPC(subscriptions=[(topic, False)]))

    async def publish(self, topic: str, data: bytes) -> int:
        """Send ``data`` on ``topic``; returns how many peers it was queued to (0 if it was already seen).
        Waits while a peer's queue is full (back-pressure) up to ``forward_timeout``, then counts a drop."""
        if not isinstance(data, bytes):
            raise LocalProtocolError(f"gossip data must be bytes, got {type(data).__name__}")
        counters = self._counters(topic)
        mid = message_id(topic, data)
        if mid in self.seen:
            log.info("publish on %s: message %s already seen, not sent again", topic, mid.hex()[:12])
            return 0
        msg = GossipMessage(topic, data)
        self._remember(mid, msg)
        counters.published += 1
        if self.config.flood_publish:
            targets = [p for p in self._topic_peers(topic) if self.score(p) >= self.config.publish_threshold]
        elif topic in self.subscriptions:
            targets = list(self.mesh.get(topic, ()))
        else:
            targets = list(self._fanout_peers(topic))
        self.fanout_last[topic] = trio.current_time()
        data_frame = self.host._encode(GossipRPC(messages=[msg]))
        reached = 0
        for p in targets:
            conn = self.host._connections.get(p)
            if conn is None:
                continue
            if await conn.send_within(data_frame, self.config.forward_timeout):
                reached += 1
            else:
                counters.dropped += 1
        counters.sent += reached
        return reached

    # --- scoring --------------------------------------------------------------------------------------------

    def score(self, peer: PeerId) -> float:
        """The peer's current score (0 for a stranger)."""
        s = self.scores.get(peer)
        if s is None:
            return 0.0
        c = self.config
        return (
            min(s.first_deliveries, c.first_delivery_cap) * c.first_delivery_weight
            + s.invalid * s.invalid * c.invalid_weight
            + s.behaviour * s.behaviour * c.behaviour_weight
            + s.mesh_failures * c.mesh_failure_weight
        )

    def _score(self, peer: PeerId) -> PeerScore:
        s = self.scores.get(peer)
        if s is None:
            s = self.scores[peer] = PeerScore()
        return s

    def penalize(self, peer: PeerId, amount: float, reason: str) -> None:
        """Add a behaviour penalty (protocol misbehaviour outside message validity)."""
        self._score(peer).behaviour += amount
        log.info("penalty %.1f for %s: %s (score %.1f)", amount, peer.short(), reason, self.score(peer))
        self._check_disconnect(peer)

    def note_invalid(self, peer: PeerId, weight: float) -> None:
        """Add ``weight`` to the peer's invalid-message counter (gossipsub's P4), for an application that finds
        part of a message bad without rejecting all of it (a batch of txs whose senders cannot pay): a fraction
        of a REJECT, which adds 1."""
        if not weight > 0:
            return
        self._score(peer).invalid += weight
        self._check_disconnect(peer)

    def _check_duplicates(self, peer: PeerId, s: PeerScore) -> None:
        """A behaviour penalty (gossipsub's P7) for copies beyond what an honest peer can send.

        An honest peer sends each message at most once, so its duplicates in a heartbeat stay below the number of
        messages that were new to us in this heartbeat and the one before. Past twice that plus
        ``duplicate_allowance``, every ``duplicate_allowance`` extra copies add 1 to the behaviour penalty
        (weighted by its square): a peer replaying one message millions of times once kept a positive score."""
        c = self.config
        allowed = 2 * (self._new_this_heartbeat + self._new_last_heartbeat) + c.duplicate_allowance
        excess = s.duplicates - allowed
        if excess > 0 and excess % c.duplicate_allowance == 0:
            self.penalize(peer, 1.0, f"{s.duplicates} duplicate messages in one heartbeat")

    def _check_disconnect(self, peer: PeerId) -> None:
        score = self.score(peer)
        if score < self.config.disconnect_threshold:
            self.host.ban(peer, f"gossip score {score:.1f} below {self.config.disconnect_threshold}")

    # --- peers coming and going -----------------------------------------------------------------------------

    def add_peer(self, peer: PeerId) -> None:
        """A connection opened: tell the peer our topics."""
        self.peer_topics.setdefault(peer, set())
        if self.subscriptions:
            self._send_rpc(peer, GossipRPC(subscriptions=[(t, True) for t in self.subscriptions]))

    def remove_peer(self, peer: PeerId) -> None:
        """A connection closed: forget its topics and mesh places (its score is kept for a while)."""
        self.peer_topics.pop(peer, None)
        for peers in self.mesh.values():
            peers.discard(peer)
        for peers in self.fanout.values():
            peers.discard(peer)

    # --- incoming -------------------------------------------------------------------------------------------

    async def handle_rpc(self, peer: PeerId, rpc: GossipRPC) -> None:
        """Process one RPC from ``peer`` (called from the peer's reader task; may wait on back-pressure)."""
        if self.score(peer) < self.config.graylist_threshold:
            self.graylisted_rpcs += 1
            if self.graylisted_rpcs in (1, 10, 100) or self.graylisted_rpcs % 1000 == 0:
                log.warning("ignoring RPC from graylisted %s (%d so far)", peer.short(), self.graylisted_rpcs)
            # a graylisted peer that keeps talking sinks further, to the disconnect threshold
            self._score(peer).behaviour += 0.5
            self._check_disconnect(peer)
            return
        for topic, subscribed in rpc.subscriptions:
            self._on_subscription(peer, topic, subscribed)
        for msg in rpc.messages:
            await self._on_message(peer, msg)
        reply = GossipRPC()
        if rpc.ihave:
            self._on_ihave(peer, rpc.ihave, reply)
        if rpc.iwant:
            self._on_iwant(peer, rpc.iwant, reply)
        for topic in rpc.graft:
            self._on_graft(peer, topic, reply)
        for topic, px in rpc.prune:
            self._on_prune(peer, topic, px)
        if not reply.is_empty():
            self._send_rpc(peer, reply)

    def _on_subscription(self, peer: PeerId, topic: str, subscribed: bool) -> None:
        topics = self.peer_topics.setdefault(peer, set())
        if subscribed:
            if len(topics) >= 1000 and topic not in topics:
                self.penalize(peer, 1.0, "subscribed to over 1000 topics")
                return
            topics.add(topic)
        else:
            topics.discard(topic)
            self.mesh.get(topic, set()).discard(peer)
            self.fanout.get(topic, set()).discard(peer)

    async def _on_message(self, peer: PeerId, msg: GossipMessage) -> None:
        topic = msg.topic
        sub = self.subscriptions.get(topic)
        mid = message_id(topic, msg.data)
        if sub is None:
            return  # not our topic: not ours to route either
        counters = self.counters[topic]
        if mid in self.seen:
            counters.duplicates += 1
            s = self._score(peer)
            if peer in self.mesh.get(topic, ()):
                s.mesh_deliveries[topic] = s.mesh_deliveries.get(topic, 0) + 1
            s.duplicates += 1
            self._check_duplicates(peer, s)
            return
        if self._over_cap(peer, topic):
            counters.rate_limited += 1
            return  # not marked seen: an honest copy from another peer is still taken
        if sub.lane_send is not None:
            try:
                sub.lane_send.send_nowait((peer, msg, mid))  # its worker validates it once we are done here
            except trio.WouldBlock:
                counters.shed += 1
                return  # not marked seen: a copy that comes when there is room is still taken
            except trio.ClosedResourceError:
                return
        self._mark_seen(mid)
        self._keep_promises(mid)
        self._new_this_heartbeat += 1
        counters.received += 1
        if sub.lane_send is None:
            await self._validate_and_deliver(peer, msg, mid, sub)

    async def _lane_worker(self, topic: str, sub: _Subscription) -> None:
        """Validate and deliver a lane's messages one at a time, yielding between them."""
        assert sub.lane_receive is not None
        async with sub.lane_receive:
            async for peer, msg, mid in sub.lane_receive:
                if self.subscriptions.get(topic) is not sub:
                    return
                await self._validate_and_deliver(peer, msg, mid, sub)
                await trio.sleep(0)  # whatever arrived meanwhile (a vote) runs before the next costly check

    async def _validate_and_deliver(self, peer: PeerId, msg: GossipMessage, mid: bytes, sub: _Subscription) -> None:
        topic = msg.topic
        counters = self.counters[topic]
        result = ValidationResult.ACCEPT
        if sub.validator is not None:
            try:
                out = sub.validator(peer, msg.data)
                result = await out if inspect.isawaitable(out) else out  # type: ignore[assignment]
            except Exception as exc:  # a validator bug must not kill the connection; treat as ignore
                log.exception("validator for %s raised %r; message ignored", topic, exc)
                result = ValidationResult.IGNORE
        if result is ValidationResult.REJECT:
            counters.invalid += 1
            self._score(peer).invalid += 1
            log.info("invalid message on %s from %s (score %.1f)", topic, peer.short(), self.score(peer))
            self._check_disconnect(peer)
            return
        if result is not ValidationResult.ACCEPT:
            counters.ignored += 1
            return
        s = self._score(peer)
        s.first_deliveries += 1
        if peer in self.mesh.get(topic, ()):
            s.mesh_deliveries[topic] = s.mesh_deliveries.get(topic, 0) + 1
        self.topic_volume[topic] = self.topic_volume.get(topic, 0) + 1
        self._remember(mid, msg)
        await self._forward(peer, msg)
        item = Received(topic, msg.data, mid, peer)
        try:
            try:
                # no checkpoint on the fast path: the reader handles a whole batch before the writer runs,
                # which is what lets the writer coalesce the forwarded frames into one send_all
                sub.send.send_nowait(item)
            except trio.WouldBlock:
                await sub.send.send(item)  # back-pressure from a slow subscriber
            counters.delivered += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # unsubscribed meanwhile, or the application closed its receive channel

    def _over_cap(self, peer: PeerId, topic: str) -> bool:
        """Count a first copy from ``peer`` on ``topic``; whether it is beyond the topic's cap for this heartbeat
        (dropped before validation: a flood costs a hash and a count per message, not a validator call)."""
        s = self._score(peer)
        n = s.first_copies[topic] = s.first_copies.get(topic, 0) + 1
        if n <= self.config.topic_cap(topic):
            return False
        s.rate_limited += 1
        return True

    async def _forward(self, source: PeerId, msg: GossipMessage) -> None:
        peers = [p for p in self.mesh.get(msg.topic, ()) if p != source]
        if not peers:
            return
        counters = self.counters[msg.topic]
        data = self.host._encode(GossipRPC(messages=[msg]))
        for p in peers:
            conn = self.host._connections.get(p)
            if conn is None:
                continue
            if await conn.send_within(data, self.config.forward_timeout):
                counters.sent += 1
            else:
                counters.dropped += 1

    def _on_ihave(self, peer: PeerId, ihave: list[tuple[str, list[bytes]]], reply: GossipRPC) -> None:
        """Ask for the advertised ids we lack, at most ``max_ihave_ids`` per peer and heartbeat.

        An honest peer advertises at most half that per heartbeat (``_emit_gossip``), so even two of its
        heartbeats falling in one of ours stay within it. Beyond it the ids are not asked for, and the flood is a
        behaviour penalty (P7): 1 on crossing the bound, 1 more for each further ``max_ihave_ids`` ids."""
        c = self.config
        if self.score(peer) < c.gossip_threshold:
            return
        s = self._score(peer)
        before = s.ihave_ids
        s.ihave_ids += sum(len(ids) for _, ids in ihave)
        if s.ihave_ids > c.max_ihave_ids:
            crossings = (s.ihave_ids - 1) // c.max_ihave_ids - max(before - 1, 0) // c.max_ihave_ids
            if crossings > 0:
                self.ihave_floods += 1
                self.penalize(peer, float(crossings), f"advertised {s.ihave_ids} ids by IHAVE in one heartbeat")
        budget = c.max_ihave_ids - before
        asked: list[bytes] = []
        for topic, ids in ihave:
            if budget <= 0:
                break
            if topic not in self.subscriptions:
                budget -= len(ids)
                continue
            for mid in ids[:budget]:
                if mid not in self.seen:
                    asked.append(mid)
            budget -= len(ids)
        if asked:
            reply.iwant.extend(asked)
            self.iwant_sent += len(asked)
            self._promise(peer, self.rng.choice(asked))

    def _on_iwant(self, peer: PeerId, iwant: list[bytes], reply: GossipRPC) -> None:
        if self.score(peer) < self.config.gossip_threshold:
            return
        s = self._score(peer)
        for mid in iwant:
            msg = self.mcache.get(mid)
            if msg is None:
                continue
            if s.iwant_served >= self.config.max_iwant_replies:
                self.penalize(peer, 0.5, "asked for too many messages in one heartbeat")
                return
            s.iwant_served += 1
            self.iwant_served += 1
            reply.messages.append(msg)

    def _on_graft(self, peer: PeerId, topic: str, reply: GossipRPC) -> None:
        if topic not in self.subscriptions:
            reply.prune.append((topic, []))
            return
        until = self.backoff.get((topic, peer))
        if until is not None and trio.current_time() < until:
            self.penalize(peer, 1.0, f"graft on {topic} during prune backoff")
            reply.prune.append((topic, []))
            return
        if self.score(peer) < 0:
            reply.prune.append((topic, []))
            return
        mesh = self.mesh.setdefault(topic, set())
        if peer not in mesh:
            mesh.add(peer)
            self._score(peer).mesh_since[topic] = self.heartbeats

    def _on_prune(self, peer: PeerId, topic: str, px: list[tuple[bytes, list[str]]]) -> None:
        self.mesh.get(topic, set()).discard(peer)
        self.backoff[(topic, peer)] = trio.current_time() + self.config.prune_backoff
        if px and self.score(peer) >= 0:
            self.host._learn_peers(px, peer, f"prune px on {topic[:64]}")

    # --- IWANT promises -------------------------------------------------------------------------------------

    def _promise(self, peer: PeerId, mid: bytes) -> None:
        """Remember that ``peer`` advertised ``mid`` and was asked for it: it has ``iwant_followup`` heartbeats."""
        peers = self.promises.get(mid)
        if peers is None:
            peers = self.promises[mid] = {}
        if peer in peers:
            return
        peers[peer] = self.heartbeats + self.config.iwant_followup
        self._promise_count += 1
        while self._promise_count > self.config.max_promises:
            _, dropped = self.promises.popitem(last=False)
            self._promise_count -= len(dropped)

    def _keep_promises(self, mid: bytes) -> None:
        """``mid`` arrived (from anyone: the peers asked for it need not send it once someone did)."""
        peers = self.promises.pop(mid, None)
        if peers:
            self._promise_count -= len(peers)

    def _judge_promises(self) -> None:
        """A behaviour penalty (P7) per peer for the promises it broke: ``broken_promise_penalty`` each."""
        broken: dict[PeerId, int] = {}
        now = self.heartbeats
        while self.promises:
            mid, peers = next(iter(self.promises.items()))
            due = [p for p, deadline in peers.items() if deadline < now]
            if not due:
                break  # entries are oldest first: the rest are due later (near enough: judged when this one is)
            for p in due:
                del peers[p]
                broken[p] = broken.get(p, 0) + 1
            self._promise_count -= len(due)
            if peers:
                self.promises.move_to_end(mid)  # its other peers were asked later
            else:
                del self.promises[mid]
        for p, n in broken.items():
            self.promises_broken += n
            if p in self.host._connections:
                self.penalize(p, n * self.config.broken_promise_penalty, f"broke {n} IWANT promises")

    # --- heartbeat ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat forever, and run the lanes' workers."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for topic, sub in list(self.subscriptions.items()):
                if sub.lane_receive is not None:
                    nursery.start_soon(self._lane_worker, topic, sub)
            try:
                while True:
                    await trio.sleep(self.config.heartbeat_interval)
                    self.heartbeat()
            finally:
                self._nursery = None

    def heartbeat(self) -> None:
        """Mesh upkeep, fanout expiry, IHAVE gossip, cache shifting, score decay."""
        c = self.config
        now = trio.current_time()
        self.heartbeats += 1
        self._decay_scores()
        self._new_last_heartbeat, self._new_this_heartbeat = self._new_this_heartbeat, 0
        for peer, s in list(self.scores.items()):
            s.duplicates = 0
            s.ihave_ids = 0
            s.first_copies.clear()
            s.rate_strikes = s.rate_strikes + 1 if s.rate_limited else 0
            if s.rate_strikes >= c.rate_limit_grace:
                self.penalize(peer, 1.0, f"over a topic's rate cap ({s.rate_limited} dropped) "
                                         f"{s.rate_strikes} heartbeats in a row")
            s.rate_limited = 0
        self._judge_promises()
        for topic in list(self.subscriptions):
            self._maintain_mesh(topic, now)
        for topic in list(self.fanout):
            if now - self.fanout_last.get(topic, 0.0) > c.fanout_ttl:
                del self.fanout[topic]
        self._emit_gossip()
        # shift the message cache
        self.windows.insert(0, [])
        while len(self.windows) > c.history_length:
            for mid, _ in self.windows.pop():
                self.mcache.pop(mid, None)
        while self.seen:
            mid, expiry = next(iter(self.seen.items()))
            if expiry > now:
                break
            self.seen.popitem(last=False)
        for key in [k for k, until in self.backoff.items() if until <= now]:
            del self.backoff[key]
        self.topic_volume.clear()

    def _decay_scores(self) -> None:
        d = self.config.decay

        def decay(v: float) -> float:
            # to zero below 0.01: else an old, tiny penalty would keep a score negative (and a peer out of the
            # mesh) forever
            v *= d
            return v if v >= 0.01 else 0.0

        for peer, s in list(self.scores.items()):
            s.first_deliveries = decay(s.first_deliveries)
            s.invalid = decay(s.invalid)
            s.behaviour = decay(s.behaviour)
            s.mesh_failures = decay(s.mesh_failures)
            s.iwant_served = 0
            if peer not in self.host._connections and abs(self.score(peer)) < 0.01:
                del self.scores[peer]

    def _maintain_mesh(self, topic: str, now: float) -> None:
        c = self.config
        mesh = self.mesh.setdefault(topic, set())
        volume = self.topic_volume.get(topic, 0)
        for p in list(mesh):
            s = self._score(p)
            # mesh-delivery deficit: a mesh member that relays nothing on a busy topic is penalised
            # only with a surplus of mesh peers: in a sparse topology a quiet peer may simply be a leaf
            active = self.heartbeats - s.mesh_since.get(topic, self.heartbeats) >= c.mesh_activation
            surplus = len(mesh) > c.D_lo
            if active and surplus and volume >= c.mesh_min_deliveries_of and not s.mesh_deliveries.get(topic):
                s.mesh_failures += 1
            s.mesh_deliveries[topic] = 0
            if self.score(p) < 0 or p not in self.host._connections:
                mesh.discard(p)
                if p in self.host._connections:
                    self._prune(p, topic)
        if len(mesh) < c.D_lo:
            candidates = [
                p
                for p in self._topic_peers(topic)
                if p not in mesh and self.score(p) >= 0 and (topic, p) not in self.backoff
            ]
            self.rng.shuffle(candidates)
            for p in candidates[: c.D - len(mesh)]:
                mesh.add(p)
                self._score(p).mesh_since[topic] = self.heartbeats
                self._send_rpc(p, GossipRPC(graft=[topic]))
        elif len(mesh) > c.D_hi:
            ranked = sorted(mesh, key=lambda p: (self.score(p), self.rng.random()), reverse=True)
            for p in ranked[c.D :]:
                mesh.discard(p)
                self._prune(p, topic)

    def _prune(self, peer: PeerId, topic: str) -> None:
        self.backoff[(topic, peer)] = trio.current_time() + self.config.prune_backoff
        px = self.host._px_entries(exclude=peer, limit=16)
        self._send_rpc(peer, GossipRPC(prune=[(topic, px)]))

    def _emit_gossip(self) -> None:
        c = self.config
        by_topic: dict[str, list[bytes]] = {}
        budgets: dict[PeerId, int] = {}
        for window in self.windows[: c.history_gossip]:
            for mid, topic in window:
                by_topic.setdefault(topic, []).append(mid)
        for topic, ids in by_topic.items():
            mesh = self.mesh.get(topic, set()) | self.fanout.get(topic, set())
            eligible = [p for p in self._topic_peers(topic) if self.score(p) >= c.gossip_threshold]
            self.rng.shuffle(eligible)
            # non-mesh peers first (they lack these messages most likely); a node whose every peer is in its
            # mesh still gets IHAVE from mesh peers, else a copy lost on a mesh link would never be repaired
            eligible.sort(key=lambda p: p in mesh)
            for p in eligible[: c.D_lazy]:
                # at most half the receiver's bound per heartbeat over all topics (the newest ids): two of our
                # heartbeats may fall in one of its
                room = budgets.get(p, c.max_ihave_ids // 2)
                if room > 0:
                    sent = ids[-room:]
                    budgets[p] = room - len(sent)
                    self._send_rpc(p, GossipRPC(ihave=[(topic, sent)]))

    # --- helpers --------------------------------------------------------------------------------------------

    def _counters(self, topic: str) -> TopicCounters:
        c = self.counters.get(topic)
        if c is None:
            c = self.counters[topic] = TopicCounters()
        return c

    def _topic_peers(self, topic: str) -> list[PeerId]:
        conns = self.host._connections
        return [p for p, topics in self.peer_topics.items() if topic in topics and p in conns]

    def _fanout_peers(self, topic: str) -> set[PeerId]:
        peers = self.fanout.setdefault(topic, set())
        peers.intersection_update(self.host._connections)
        if len(peers) < self.config.D:
            extra = [
                p
                for p in self._topic_peers(topic)
                if p not in peers and self.score(p) >= self.config.publish_threshold
            ]
            self.rng.shuffle(extra)
            peers.update(extra[: self.config.D - len(peers)])
        return peers

    def _mark_seen(self, mid: bytes) -> None:
        seen = self.seen
        seen[mid] = trio.current_time() + self.config.seen_ttl
        seen.move_to_end(mid)
        if len(seen) > self.config.seen_max:
            seen.popitem(last=False)
            self.seen_evicted += 1
            if self.seen_evicted in (1, 1000) or self.seen_evicted % 100_000 == 0:
                log.warning("seen-cache full (%d ids): evicted %d before their ttl", len(seen), self.seen_evicted)

    def _remember(self, mid: bytes, msg: GossipMessage) -> None:
        self._mark_seen(mid)
        self.mcache[mid] = msg
        self.windows[0].append((mid, msg.topic))

    def _send_rpc(self, peer: PeerId, rpc: GossipRPC) -> None:
        conn = self.host._connections.get(peer)
        if conn is not None:
            conn.try_send_encoded(self.host._encode(rpc))

    def _broadcast(self, rpc: GossipRPC) -> None:
        data = self.host._encode(rpc)
        for conn in list(self.host._connections.values()):
            conn.try_send_encoded(data)
