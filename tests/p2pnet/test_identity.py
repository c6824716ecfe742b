"""Identities, key files and peer ids, checked against libp2p's peer-ids spec vector."""

import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnet.errors import IdentityError, InvalidPeerId, KeyFileError, P2PError
from p2pnet.identity import (
    Identity,
    PeerId,
    b58decode,
    b58encode,
    load_identity,
    load_or_create_identity,
    save_identity,
)

# libp2p/specs peer-ids: Ed25519 private key protobuf and its public key protobuf
SPEC_PRIVATE = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
SPEC_PUBLIC = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
SPEC_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


def test_spec_vector() -> None:
    ident = Identity.from_private_key_protobuf(SPEC_PRIVATE)
    assert ident.peer_id.to_bytes() == bytes([0, 36]) + SPEC_PUBLIC
    assert ident.peer_id.to_string() == SPEC_PEER_ID
    assert str(ident.peer_id) == SPEC_PEER_ID
    assert ident.to_private_key_protobuf() == SPEC_PRIVATE
    parsed = PeerId.from_string(SPEC_PEER_ID)
    assert parsed == ident.peer_id
    assert parsed.public_key == SPEC_PUBLIC[4:]


def test_round_trip_and_signing() -> None:
    ident = Identity.generate()
    text = ident.peer_id.to_string()
    assert text.startswith("12D3KooW")
    assert PeerId.from_string(text) == ident.peer_id
    assert PeerId.from_public_key(ident.public_key) == ident.peer_id
    sig = ident.sign(b"hello")
    assert ident.peer_id.verify(b"hello", sig)
    assert not ident.peer_id.verify(b"hellO", sig)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("12D3KooW0", "base58"),  # '0' is not in the alphabet
        ("Il", "base58"),
        (b58encode(bytes([0x12, 0x20]) + bytes(32)), "multihash code"),  # sha2-256 multihash
        (b58encode(bytes([0x00, 36, 0x08, 0x00, 0x12, 0x20]) + bytes(32)), "not Ed25519"),  # RSA type
        (b58encode(bytes([0x00, 35, 0x08, 0x01, 0x12, 0x1F]) + bytes(31)), "32 bytes"),
        (b58encode(bytes([0x00, 40]) + SPEC_PUBLIC), "length"),
        ("1" * 200, "longer"),
    ],
)
def test_malformed_peer_ids(text: str, reason: str) -> None:
    with pytest.raises(InvalidPeerId) as info:
        PeerId.from_string(text)
    assert reason in str(info.value)
    assert isinstance(info.value, P2PError)


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


@given(st.text(max_size=60))
def test_random_text_only_raises_invalid_peer_id(text: str) -> None:
    with contextlib.suppress(InvalidPeerId):
        PeerId.from_string(text)


def test_key_file_created_once_with_mode_0600(tmp_path) -> None:
    path = tmp_path / "keys" / "node.key"
    assert not path.exists()
    first = load_or_create_identity(path)
    assert path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    again = load_or_create_identity(path)
    assert again.peer_id == first.peer_id


def test_key_file_too_permissive_is_refused(tmp_path) -> None:
    path = tmp_path / "node.key"
    save_identity(Identity.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError) as info:
        load_identity(path)
    assert "0644" in str(info.value)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", SPEC_PRIVATE[:-1], SPEC_PRIVATE[:-1] + b"\x00"],  # last one: public key does not match
)
def test_malformed_key_file_is_refused(tmp_path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError) as info:
        load_or_create_identity(path)
    assert "malformed" in str(info.value)


def test_bad_seed_length() -> None:
    with pytest.raises(IdentityError):
        Identity.from_seed(b"short")
