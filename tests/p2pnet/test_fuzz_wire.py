"""Fuzzing p2pnet's decoders of untrusted bytes: frames, wire messages, the Noise handshake payload, peer ids and
multiaddrs. Each either raises its own typed error or returns something that re-encodes to what it read.

Bounded by the Hypothesis profile (``ci``: 60 examples per target); ``bench/fuzz_long.py`` runs the same targets
for longer (``TARGETS`` below is its registry)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from p2pnet.errors import FrameTooLarge, HandshakeError, InvalidMultiaddr, InvalidPeerId, ProtocolError, TruncatedFrame
from p2pnet.framing import (
    FrameDecoder,
    Goodbye,
    GossipMessage,
    GossipRPC,
    Hello,
    Ping,
    Request,
    Response,
    decode_message,
    encode_message,
    join_frames,
)
from p2pnet.identity import Identity, PeerId
from p2pnet.multiaddr import Multiaddr
from p2pnet.noise import decode_handshake_payload, encode_handshake_payload
from tests.fuzzing import FUZZ, Target, target_tests

# --- valid encodings ------------------------------------------------------------------------------------------

_topics = st.text(min_size=1, max_size=24)
_ids = st.lists(st.binary(max_size=64), max_size=4)
_payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=24)
    | st.binary(max_size=48),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.one_of(
    st.builds(Hello, st.lists(st.text(max_size=60), max_size=4), st.text(max_size=30)),
    st.just(Ping()),
    st.builds(Goodbye, st.text(max_size=80)),
    st.builds(Request, st.integers(0, 2**64 - 1), st.text(max_size=60), _payloads),
    st.builds(Response, st.integers(0, 2**64 - 1), st.booleans(), _payloads),
    st.builds(
        GossipRPC,
        subscriptions=st.lists(st.tuples(_topics, st.booleans()), max_size=3),
        messages=st.lists(st.builds(GossipMessage, _topics, st.binary(max_size=120)), max_size=3),
        ihave=st.lists(st.tuples(_topics, _ids), max_size=2),
        iwant=_ids,
        graft=st.lists(_topics, max_size=3),
        prune=st.lists(
            st.tuples(
                _topics,
                st.lists(st.tuples(st.binary(max_size=40), st.lists(st.text(max_size=40), max_size=3)), max_size=3),
            ),
            max_size=2,
        ),
    ),
)

_IDENTITY = Identity.from_seed(bytes(range(32)))
_STATIC = bytes(range(100, 132))
_identities = st.binary(min_size=32, max_size=32).map(Identity.from_seed)


def _check_message(msg: object, data: bytes) -> None:
    assert isinstance(msg, Hello | Ping | Goodbye | Request | Response | GossipRPC)
    # What we accepted, we can send on, and it means the same thing to the next peer.
    assert decode_message(encode_message(msg)) == msg  # type: ignore[arg-type]


def _check_handshake(peer: object, data: bytes) -> None:
    # Only the key that signed our static key can be proven; no mutation may prove anyone else.
    assert peer == _IDENTITY.peer_id


def _check_peer_id(peer: PeerId, data: bytes) -> None:
    assert peer.to_bytes() == data


def _check_peer_text(peer: PeerId, data: bytes) -> None:
    assert peer.to_string() == data.decode("utf-8", "replace")


def _check_multiaddr(addr: Multiaddr, data: bytes) -> None:
    assert Multiaddr.parse(str(addr)) == addr


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


_peer_ids = _identities.map(lambda i: i.peer_id)
_multiaddrs = st.one_of(
    st.builds(lambda a, p: f"/ip4/{a}/tcp/{p}", st.ip_addresses(v=4), st.integers(0, 65535)),
    st.builds(lambda a, p: f"/ip6/{a}/tcp/{p}", st.ip_addresses(v=6), st.integers(0, 65535)),
    st.builds(lambda p: f"/dns/node-1.example.org/tcp/{p}", st.integers(0, 65535)),
    st.builds(lambda n: f"/memory/{n}", st.integers(0, 10**6)),
)
_multiaddrs = st.one_of(_multiaddrs, st.builds(lambda a, p: f"{a}/p2p/{p}", _multiaddrs, _peer_ids))

TARGETS = [
    Target(
        "p2pnet.decode_message",
        decode_message,
        (ProtocolError,),
        messages.map(encode_message),
        _check_message,
    ),
    Target(
        "p2pnet.decode_handshake_payload",
        lambda data: decode_handshake_payload(data, _STATIC),
        (HandshakeError,),
        st.just(encode_handshake_payload(_IDENTITY, _STATIC)),
        _check_handshake,
        msgpack_format=False,
    ),
    Target(
        "p2pnet.PeerId.from_bytes",
        PeerId.from_bytes,
        (InvalidPeerId,),
        _peer_ids.map(PeerId.to_bytes),
        _check_peer_id,
        msgpack_format=False,
    ),
    Target(
        "p2pnet.PeerId.from_string",
        lambda data: PeerId.from_string(_text(data)),
        (InvalidPeerId,),
        _peer_ids.map(lambda p: p.to_string().encode()),
        _check_peer_text,
        msgpack_format=False,
    ),
    Target(
        "p2pnet.Multiaddr.parse",
        lambda data: Multiaddr.parse(_text(data)),
        (InvalidMultiaddr,),
        _multiaddrs.map(str.encode),
        _check_multiaddr,
        msgpack_format=False,
    ),
]


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


@FUZZ
@given(messages)
def test_every_message_round_trips(msg: object) -> None:
    assert decode_message(encode_message(msg)) == msg  # type: ignore[arg-type]


@FUZZ
@given(st.lists(messages.map(encode_message), max_size=6), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_frames_split_anywhere_come_back_whole(frames: list[bytes], cuts: list[int]) -> None:
    stream = join_frames(frames)
    dec = FrameDecoder()
    out: list[bytes] = []
    pos, k = 0, 0
    while pos < len(stream):
        step = cuts[k % len(cuts)]
        dec.receive_data(stream[pos : pos + step])
        pos, k = pos + step, k + 1
        out.extend(dec.frames())
    dec.end_of_stream()
    assert out == frames


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=16), st.integers(8, 64))
def test_random_stream_gives_frames_or_a_typed_error(chunks: list[bytes], max_frame: int) -> None:
    dec = FrameDecoder(max_frame=max_frame)
    got = 0
    try:
        for c in chunks:
            dec.receive_data(c)
            for f in dec.frames():
                assert len(f) <= max_frame
                got += 4 + len(f)
        dec.end_of_stream()
    except FrameTooLarge as exc:
        assert exc.length > exc.limit == max_frame
    except TruncatedFrame as exc:
        assert exc.pending == dec.pending > 0
    else:
        assert got == sum(len(c) for c in chunks)  # a clean end: every byte was part of a whole frame
