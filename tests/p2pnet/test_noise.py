"""The sans-IO Noise XX handshake and session."""

import struct

import nacl.public
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnet.errors import DecryptError, HandshakeError, PeerIdMismatch
from p2pnet.identity import Identity
from p2pnet.noise import (
    MAX_PLAINTEXT_CHUNK,
    NoiseHandshake,
    decode_handshake_payload,
    encode_handshake_payload,
    is_low_order,
)

ALICE, BOB, MALLORY = Identity.generate(), Identity.generate(), Identity.generate()


def _run(initiator: NoiseHandshake, responder: NoiseHandshake) -> None:
    responder.receive_data(initiator.bytes_to_send())
    initiator.receive_data(responder.bytes_to_send())
    responder.receive_data(initiator.bytes_to_send())


def test_handshake_authenticates_both_sides() -> None:
    i = NoiseHandshake(ALICE, initiator=True, expected_peer=BOB.peer_id)
    r = NoiseHandshake(BOB, initiator=False)
    assert not i.complete and not r.complete
    _run(i, r)
    assert i.complete and r.complete
    assert i.remote_peer == BOB.peer_id and r.remote_peer == ALICE.peer_id
    si, sr = i.session(), r.session()
    big = bytes(range(256)) * 1000  # several Noise messages
    wire = si.encrypt(big)
    assert len(wire) > len(big) and big[:100] not in wire
    sr.receive_data(wire[:70000])
    sr.receive_data(wire[70000:])
    out = b""
    while (p := sr.next_plaintext()) is not None:
        assert len(p) <= MAX_PLAINTEXT_CHUNK
        out += p
    assert out == big


def test_transport_data_in_the_same_read_as_the_last_handshake_message() -> None:
    i = NoiseHandshake(ALICE, initiator=True)
    r = NoiseHandshake(BOB, initiator=False)
    r.receive_data(i.bytes_to_send())
    i.receive_data(r.bytes_to_send())
    r.receive_data(i.bytes_to_send() + i.session().encrypt(b"early"))
    assert r.complete
    assert r.session().next_plaintext() == b"early"


def test_wrong_identity_is_refused_before_initiator_reveals_itself() -> None:
    i = NoiseHandshake(ALICE, initiator=True, expected_peer=BOB.peer_id)
    r = NoiseHandshake(MALLORY, initiator=False)
    r.receive_data(i.bytes_to_send())
    with pytest.raises(PeerIdMismatch) as info:
        i.receive_data(r.bytes_to_send())
    assert info.value.expected == BOB.peer_id and info.value.actual == MALLORY.peer_id
    assert i.bytes_to_send() == b""  # no third message: Alice's identity never left


def test_payload_signature_binds_the_static_key() -> None:
    payload = encode_handshake_payload(ALICE, b"\x01" * 32)
    assert decode_handshake_payload(payload, b"\x01" * 32) == ALICE.peer_id
    with pytest.raises(HandshakeError, match="did not sign"):
        decode_handshake_payload(payload, b"\x02" * 32)


def test_tampered_handshake_message_fails() -> None:
    i = NoiseHandshake(ALICE, initiator=True)
    r = NoiseHandshake(BOB, initiator=False)
    r.receive_data(i.bytes_to_send())
    msg2 = bytearray(r.bytes_to_send())
    msg2[-5] ^= 1
    with pytest.raises(HandshakeError):
        i.receive_data(bytes(msg2))


@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_only_raise_handshake_error(data: bytes) -> None:
    r = NoiseHandshake(BOB, initiator=False)
    try:
        r.receive_data(data)
        r.bytes_to_send()
        r.receive_data(data)
    except HandshakeError:
        pass


def test_forged_transport_message_fails() -> None:
    i = NoiseHandshake(ALICE, initiator=True)
    r = NoiseHandshake(BOB, initiator=False)
    _run(i, r)
    wire = bytearray(i.session().encrypt(b"hello"))
    wire[4] ^= 0xFF
    sr = r.session()
    sr.receive_data(bytes(wire))
    with pytest.raises(DecryptError):
        sr.next_plaintext()


# Every small-order X25519 point (and the non-canonical encodings of 0 and 1 with the top bit set): a DH with any
# of them gives the all-zero secret.
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    b"\xec" + b"\xff" * 30 + b"\x7f",
    b"\xed" + b"\xff" * 30 + b"\x7f",
    b"\xee" + b"\xff" * 30 + b"\x7f",
    bytes(31) + b"\x80",
    b"\xee" + b"\xff" * 31,
]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_a_low_order_ephemeral_key_is_a_handshake_error_not_a_crash(point: bytes) -> None:
    assert is_low_order(point)
    responder = NoiseHandshake(Identity.generate(), initiator=False)
    with pytest.raises(HandshakeError, match="low-order"):
        responder.receive_data(struct.pack(">H", 32) + point)


def test_an_ordinary_key_is_not_low_order() -> None:
    assert not is_low_order(bytes(nacl.public.PrivateKey.generate().public_key))
