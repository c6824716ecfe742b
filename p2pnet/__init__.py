"""The peer-to-peer layer: identities, Noise-secured connections, framing, request/response, gossip, discovery.

The API the node uses::

    host = Host(identity, HostConfig(listen_addrs=[...], bootstrap=[...], peer_table_path=...))
    await nursery.start(host.run)                  # returns once listening; host.listen_addrs is set
    peer = await host.dial("/ip4/1.2.3.4/tcp/4001/p2p/12D3KooW…")   # PeerIdMismatch if someone else answers
    host.peers()                                   # connected PeerIds
    host.set_request_handler("/dacn/blocks/1", handler)   # async handler(peer_id, payload) -> payload
    reply = await host.request(peer, "/dacn/blocks/1", payload, timeout=5.0)
    digest = host.provide_blob(data)               # or host.set_blob_reader(fn) / set_blob_provider(fn)
    data = await host.fetch_blob(peer, digest)     # chunked, BLAKE2b-256 checked
    inbox = host.gossip.subscribe("txs", validator)   # validator(peer, data) -> ValidationResult
    reached = await host.gossip.publish("txs", data)  # number of peers the message was queued to
    host.metrics()                                 # per-topic and per-connection counters

``HostConfig()`` holds production defaults, ``HostConfig.test()`` short timers for tests; ``validate()`` raises
``ConfigError`` naming the field. ``discovery=False`` keeps a fixed topology (no bootstrap dials, peer exchange or
pruning); ``peer_table_path`` saves known peers and reuses them on restart.

Identities: :class:`Identity`, :class:`PeerId`, :func:`load_or_create_identity`, :func:`save_identity`.
Errors: every one derives from :class:`P2PError` (see :mod:`p2pnet.errors`).
Simulation: :mod:`p2pnet.testing` (an in-memory network for the same Host code, under a mock clock).
Multi-process tests and benchmarks: :mod:`p2pnet.tools` (a stand-alone node, and a harness that starts them).
"""

from p2pnet.config import GossipConfig, HostConfig
from p2pnet.errors import (
    BlobDigestMismatch,
    ConnectionClosed,
    DialError,
    HandshakeError,
    P2PError,
    PeerIdMismatch,
    ProtocolError,
    RemoteError,
    RequestTimeout,
)
from p2pnet.gossip import Received, ValidationResult
from p2pnet.host import Host, blob_digest
from p2pnet.identity import Identity, PeerId, load_identity, load_or_create_identity, save_identity
from p2pnet.multiaddr import Multiaddr

__all__ = [
    "BlobDigestMismatch",
    "ConnectionClosed",
    "DialError",
    "GossipConfig",
    "HandshakeError",
    "Host",
    "HostConfig",
    "Identity",
    "Multiaddr",
    "P2PError",
    "PeerId",
    "PeerIdMismatch",
    "ProtocolError",
    "Received",
    "RemoteError",
    "RequestTimeout",
    "ValidationResult",
    "blob_digest",
    "load_identity",
    "load_or_create_identity",
    "save_identity",
]
