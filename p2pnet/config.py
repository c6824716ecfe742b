"""Host and gossip settings with defaults, a fast ``test()`` preset, and ``validate()``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from p2pnet.errors import ConfigError


@dataclass
class GossipConfig:
    """Gossipsub-like mesh parameters and peer-score weights and thresholds."""

    D: int = 6
    D_lo: int = 4
    D_hi: int = 12
    D_lazy: int = 6
    heartbeat_interval: float = 1.0
    history_length: int = 5  # heartbeats a message stays answerable to IWANT
    history_gossip: int = 3  # heartbeats a message is advertised in IHAVE
    seen_ttl: float = 120.0
    seen_max: int = 500_000  # ids kept at most (oldest evicted first) whatever the rate: bounded memory
    fanout_ttl: float = 60.0
    prune_backoff: float = 60.0
    flood_publish: bool = True  # own messages go to every subscribed peer, not only the mesh
    forward_timeout: float = 1.0  # how long forwarding waits on a full peer queue before counting a drop
    # IHAVE ids a peer may advertise per heartbeat (we advertise at most half of it); beyond, a behaviour penalty
    max_ihave_ids: int = 5000
    iwant_followup: int = 3  # heartbeats a peer has to deliver what it advertised and we asked for by IWANT
    max_promises: int = 10_000  # IWANT promises remembered at most (one id per IWANT sent)
    broken_promise_penalty: float = 0.5  # behaviour penalty per promise not kept by its deadline
    max_iwant_replies: int = 5000  # per peer per heartbeat
    subscription_queue: int = 10_000
    # First copies a peer may send us per topic and heartbeat; beyond, they are dropped before validation (counted
    # as ``rate_limited``), and each heartbeat over a cap from the ``rate_limit_grace``-th in a row on adds a
    # behaviour penalty of 1. The default is far above honest load: the devnet's ~4,000 tx/s travel in batches
    # of up to 256 (some 16 messages a second on dacn/txs/1), consensus a few votes per validator and round, and
    # a leaf whose one peer relays it everything still sees no more than the whole network's rate.
    default_topic_cap: int = 20_000
    topic_caps: dict[str, int] = field(default_factory=dict)  # topic -> its own cap
    rate_limit_grace: int = 2  # heartbeats over a cap in a row before each adds a penalty (a burst is no offence)
    # scoring
    first_delivery_weight: float = 1.0
    first_delivery_cap: float = 100.0
    invalid_weight: float = -10.0  # times invalid count squared
    behaviour_weight: float = -5.0  # times penalty squared
    duplicate_allowance: int = 64  # duplicate copies per heartbeat beyond what honest relaying explains
    mesh_failure_weight: float = -2.0
    mesh_activation: int = 5  # heartbeats in the mesh before deficits count
    mesh_min_deliveries_of: int = (
        20  # a topic must see this many messages per heartbeat for deficits to count
    )
    decay: float = 0.95  # per heartbeat
    gossip_threshold: float = -10.0
    publish_threshold: float = -50.0
    graylist_threshold: float = -80.0
    disconnect_threshold: float = -100.0

    def topic_cap(self, topic: str) -> int:
        """First copies a peer may send us on ``topic`` per heartbeat."""
        return self.topic_caps.get(topic, self.default_topic_cap)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        if not 0 < self.D_lo <= self.D <= self.D_hi:
            raise ConfigError("D", (self.D_lo, self.D, self.D_hi), "need 0 < D_lo ≤ D ≤ D_hi")
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval", self.heartbeat_interval, "must be > 0")
        if not 0 < self.history_gossip <= self.history_length:
            raise ConfigError(
                "history_gossip", self.history_gossip, "need 0 < history_gossip ≤ history_length"
            )
        if not 0 < self.decay < 1:
            raise ConfigError("decay", self.decay, "must be in (0, 1)")
        if self.duplicate_allowance < 1:
            raise ConfigError("duplicate_allowance", self.duplicate_allowance, "must be at least 1")
        if not (
            0
            >= self.gossip_threshold
            >= self.publish_threshold
            >= self.graylist_threshold
            >= self.disconnect_threshold
        ):
            raise ConfigError(
                "thresholds", self.gossip_threshold, "need 0 ≥ gossip ≥ publish ≥ graylist ≥ disconnect"
            )
        if self.seen_max < 1000:
            raise ConfigError("seen_max", self.seen_max, "must be ≥ 1000")
        if type(self.default_topic_cap) is not int or self.default_topic_cap < 1:
            raise ConfigError("default_topic_cap", self.default_topic_cap, "must be an int ≥ 1")
        for topic, cap in self.topic_caps.items():
            if not isinstance(topic, str) or not topic:
                raise ConfigError("topic_caps", topic, "topics must be non-empty strings")
            if type(cap) is not int or cap < 1:
                raise ConfigError(f"topic_caps[{topic!r}]", cap, "must be an int ≥ 1")
        if self.rate_limit_grace < 1:
            raise ConfigError("rate_limit_grace", self.rate_limit_grace, "must be ≥ 1 heartbeat")
        if self.max_ihave_ids < 2:
            raise ConfigError("max_ihave_ids", self.max_ihave_ids, "must be ≥ 2 (we advertise half of it)")
        if self.iwant_followup < 1:
            raise ConfigError("iwant_followup", self.iwant_followup, "must be ≥ 1 heartbeat")
        if self.max_promises < 1:
            raise ConfigError("max_promises", self.max_promises, "must be ≥ 1")
        if self.broken_promise_penalty < 0:
            raise ConfigError("broken_promise_penalty", self.broken_promise_penalty, "must be ≥ 0")
        if self.subscription_queue < 1:
            raise ConfigError("subscription_queue", self.subscription_queue, "must be ≥ 1")


@dataclass
class HostConfig:
    """Everything a Host needs besides its identity. ``HostConfig()`` is for production, ``test()`` for tests."""

    listen_addrs: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    peer_table_path: str | None = None
    agent: str = "dacn/0.1"
    max_frame: int = 4 * 1024 * 1024
    send_queue: int = 8192  # frames per connection
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    keepalive_interval: float = 15.0
    write_timeout: float = 20.0
    request_timeout: float = 10.0
    max_inbound: int = 64
    max_outbound: int = 32
    discovery: bool = True  # False: no bootstrap dials, peer exchange, exploration or pruning (fixed topologies)
    target_peers: int = 8
    max_peers: int = 24  # above this, discovery prunes peers outside the gossip mesh
    rate_limit: float = 50_000.0  # frames per second per peer; above it we stop reading (back-pressure)
    rate_burst: float = 100_000.0
    max_concurrent_requests: int = 64
    # Inbound slots per remote IP and per /24 (/64), handshakes in progress included; loopback is exempt unless
    # limit_loopback (a devnet runs every node on 127.0.0.1).
    max_inbound_per_ip: int = 8
    max_inbound_per_subnet: int = 16
    limit_loopback: bool = False
    # Peer ids (text) that keep a slot whatever strangers do, are never pruned and are re-dialed when known:
    # the validator set, configured persistent peers. Host.protect() sets them at run time.
    protected_peers: list[str] = field(default_factory=list)
    protected_redial_max: float = 5.0  # seconds: the longest wait between dials of a protected peer
    # Request budgets per peer and protocol (sync, blob, status, px): requests and answer bytes per second.
    request_rate: float = 50.0
    request_burst: float = 100.0
    response_bytes_rate: float = 32 * 1024 * 1024
    response_bytes_burst: float = 64 * 1024 * 1024
    busy_strikes: int = 200  # refusals (net of requests within budget) before a disconnect and a ban
    busy_ban: float = 60.0
    ban_duration: float = 600.0
    dial_backoff_base: float = 1.0
    dial_backoff_max: float = 300.0
    discovery_interval: float = 2.0
    px_interval: float = 10.0
    save_interval: float = 60.0
    blob_chunk: int = 1024 * 1024
    max_blob: int = 1024 * 1024 * 1024
    gossip: GossipConfig = field(default_factory=GossipConfig)

    @classmethod
    def test(cls, **overrides: object) -> HostConfig:
        """A preset for loopback tests and simulations: short timers, small limits."""
        gossip = GossipConfig(heartbeat_interval=0.1, prune_backoff=1.0, seen_ttl=30.0, fanout_ttl=5.0)
        cfg = cls(
            listen_addrs=["/ip4/127.0.0.1/tcp/0"],
            handshake_timeout=2.0,
            idle_timeout=5.0,
            keepalive_interval=0.5,
            write_timeout=2.0,
            request_timeout=2.0,
            target_peers=6,
            max_peers=16,
            ban_duration=30.0,
            dial_backoff_base=0.1,
            dial_backoff_max=2.0,
            discovery_interval=0.2,
            px_interval=0.5,
            save_interval=1.0,
            blob_chunk=64 * 1024,
            gossip=gossip,
        )
        return replace(cfg, **overrides)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        positive = [
            "max_frame",
            "send_queue",
            "handshake_timeout",
            "idle_timeout",
            "keepalive_interval",
            "write_timeout",
            "request_timeout",
            "rate_limit",
            "rate_burst",
            "max_concurrent_requests",
            "ban_duration",
            "dial_backoff_base",
            "discovery_interval",
            "px_interval",
            "save_interval",
            "blob_chunk",
            "max_blob",
            "max_inbound_per_ip",
            "max_inbound_per_subnet",
            "protected_redial_max",
            "request_rate",
            "request_burst",
            "response_bytes_rate",
            "response_bytes_burst",
            "busy_strikes",
            "busy_ban",
        ]
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(name, value, "must be > 0")
        if self.max_frame < 1024:
            raise ConfigError("max_frame", self.max_frame, "must be ≥ 1024")
        if self.blob_chunk > self.max_frame - 1024:
            raise ConfigError("blob_chunk", self.blob_chunk, "must leave room under max_frame")
        if self.keepalive_interval >= self.idle_timeout:
            raise ConfigError("keepalive_interval", self.keepalive_interval, "must be below idle_timeout")
        if self.max_inbound < 0 or self.max_outbound < 0:
            raise ConfigError(
                "max_inbound/max_outbound", (self.max_inbound, self.max_outbound), "must be ≥ 0"
            )
        if not 0 <= self.target_peers <= self.max_peers:
            raise ConfigError("target_peers", self.target_peers, "need 0 ≤ target_peers ≤ max_peers")
        if self.dial_backoff_max < self.dial_backoff_base:
            raise ConfigError("dial_backoff_max", self.dial_backoff_max, "must be ≥ dial_backoff_base")
        from p2pnet.multiaddr import Multiaddr  # local: config stays importable without the parser's deps

        for text in [*self.listen_addrs, *self.bootstrap]:
            Multiaddr.parse(text)
        from p2pnet.identity import PeerId  # local, as above

        for text in self.protected_peers:
            try:
                PeerId.from_string(text)
            except Exception as exc:  # InvalidPeerId, or bytes that are not a key
                raise ConfigError("protected_peers", text, f"not a peer id: {exc}") from None
        self.gossip.validate()
