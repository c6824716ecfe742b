"""Framing, message decoding and multiaddrs: round trips, splits, caps, and random bytes."""

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnet.errors import (
    FrameTooLarge,
    InvalidMultiaddr,
    LocalProtocolError,
    MessageTooLarge,
    ProtocolError,
    TruncatedFrame,
)
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
from p2pnet.identity import Identity
from p2pnet.multiaddr import Multiaddr

topics = st.text(min_size=1, max_size=20)
ids = st.lists(st.binary(max_size=32), max_size=5)
payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=64) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
messages = st.one_of(
    st.builds(Hello, st.lists(st.text(max_size=40), max_size=4), st.text(max_size=20)),
    st.just(Ping()),
    st.builds(Goodbye, st.text(max_size=50)),
    st.builds(Request, st.integers(0, 2**64 - 1), st.text(max_size=30), payloads),
    st.builds(Response, st.integers(0, 2**64 - 1), st.booleans(), payloads),
    st.builds(
        GossipRPC,
        st.lists(st.tuples(topics, st.booleans()), max_size=3),
        st.lists(st.builds(GossipMessage, topics, st.binary(max_size=100)), max_size=3),
        st.lists(st.tuples(topics, ids), max_size=3),
        ids,
        st.lists(topics, max_size=3),
        st.lists(
            st.tuples(topics, st.lists(st.tuples(st.binary(max_size=38), st.lists(st.text(max_size=30), max_size=2)))),
            max_size=2,
        ),
    ),
)


@given(messages)
def test_message_round_trip(msg) -> None:
    decoded = decode_message(encode_message(msg))
    assert type(decoded) is type(msg)
    assert encode_message(decoded) == encode_message(msg)


@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(1, 50), max_size=20))
def test_decoder_reassembles_any_split(msgs, cuts) -> None:
    stream = join_frames([encode_message(m) for m in msgs])
    dec = FrameDecoder()
    frames: list[bytes] = []
    pos = 0
    for c in cuts:
        dec.receive_data(stream[pos : pos + c])
        pos += c
        frames += dec.frames()
    dec.receive_data(stream[pos:])
    frames += dec.frames()
    dec.end_of_stream()
    assert [encode_message(decode_message(f)) for f in frames] == [encode_message(m) for m in msgs]


@given(st.binary(max_size=300))
def test_random_frames_only_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


@given(st.binary(max_size=300))
def test_random_stream_only_raises_frame_errors(data: bytes) -> None:
    dec = FrameDecoder(max_frame=1000)
    dec.receive_data(data)
    try:
        for f in dec.frames():
            with contextlib.suppress(ProtocolError):
                decode_message(f)
        dec.end_of_stream()
    except (FrameTooLarge, TruncatedFrame):
        pass


@given(payloads)
def test_random_valid_msgpack_only_raises_protocol_error(obj) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(msgpack.packb(obj, use_bin_type=True))


def test_oversized_frame_refused_at_header() -> None:
    dec = FrameDecoder(max_frame=100)
    dec.receive_data((101).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge) as info:
        dec.next_frame()
    assert (info.value.length, info.value.limit) == (101, 100)


def test_truncated_frame_at_eof() -> None:
    dec = FrameDecoder()
    dec.receive_data(join_frames([encode_message(Ping())])[:-1])
    assert dec.next_frame() is None
    with pytest.raises(TruncatedFrame):
        dec.end_of_stream()


def test_encode_over_cap_is_local_error() -> None:
    with pytest.raises(MessageTooLarge):
        encode_message(Request(1, "/x", b"a" * 2000), max_frame=1024)
    with pytest.raises(LocalProtocolError):
        encode_message(Request(1, "/x", object()))


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"a": 1}, "list starting"),
        (["z"], "unknown message kind"),
        (["q", -1, "/p", None], "request needs"),
        (["r", 1, "yes", None], "response needs"),
        (["g", [], [["t", "not bytes"]], [], [], [], []], "a message is"),
        (["g", [], [], [], ["x" * 65], [], []], "iwant"),
    ],
)
def test_malformed_messages(obj, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(msgpack.packb(obj, use_bin_type=True))
    assert reason in info.value.reason


def test_multiaddr_round_trips() -> None:
    pid = Identity.generate().peer_id
    for text in [
        "/ip4/127.0.0.1/tcp/4001",
        f"/ip4/10.0.0.1/tcp/0/p2p/{pid}",
        "/ip6/::1/tcp/9000",
        f"/dns/boot.example.org/tcp/443/p2p/{pid}",
        "/dns4/a-b.c/tcp/1",
        "/memory/7",
    ]:
        ma = Multiaddr.parse(text)
        assert str(ma) == text
    ma = Multiaddr.parse(f"/ip4/1.2.3.4/tcp/5/p2p/{pid}")
    assert (ma.kind, ma.host, ma.port, ma.peer_id) == ("ip4", "1.2.3.4", 5, pid)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ip4/1.2.3.4/tcp/1", "start with"),
        ("/ip4/1.2.3.400/tcp/1", "not an ip4"),
        ("/ip6/nothex/tcp/1", "not an ip6"),
        ("/ip4/1.2.3.4", "followed by /tcp"),
        ("/ip4/1.2.3.4/tcp/70000", "out of range"),
        ("/ip4/1.2.3.4/tcp/x1", "not a number"),
        ("/ip4/1.2.3.4/tcp/1/p2p/notapeer0", "bad /p2p"),
        ("/ip4/1.2.3.4/tcp/1/udp/3", "trailing"),
        ("/quic/1", "unsupported"),
        ("/dns/bad host/tcp/1", "DNS name"),
    ],
)
def test_malformed_multiaddrs(text: str, reason: str) -> None:
    with pytest.raises(InvalidMultiaddr) as info:
        Multiaddr.parse(text)
    assert reason in info.value.reason
