"""Canonical MessagePack: round trips, and every kind of hostile input rejected with a DecodeError."""

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import pack, unpack
from ledger.errors import DecodeError, EncodeError

values = st.recursive(
    st.none() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@given(values)
def test_round_trip_is_identity_and_canonical(value: object) -> None:
    data = pack(value)
    assert unpack(data, max_size=1 << 20) == value
    assert pack(unpack(data, max_size=1 << 20)) == data


def test_bytes_and_str_are_distinguished() -> None:
    assert unpack(pack([b"ab", "ab"]), max_size=100) == [b"ab", "ab"]
    assert type(unpack(pack(b"ab"), max_size=100)) is bytes


@pytest.mark.parametrize("bad", [1.5, {1: 2}, True, 2**64, -(2**63) - 1, bytearray(b"x"), {"a"}])
def test_pack_rejects_disallowed_values(bad: object) -> None:
    with pytest.raises(EncodeError):
        pack([1, bad])


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ([b"a", [1, [None, 1.5]]], "$[1][1][1]", "type float is not allowed"),
        ([[True], [b"x"] * 3], "$[0][0]", "type bool is not allowed"),
        ((1, (2, 2**64)), "$[1][1]", "integer out of the 64-bit range"),
        ({1: 2}, "$", "type dict is not allowed"),
    ],
)
def test_pack_names_where_the_disallowed_value_is(value: object, path: str, reason: str) -> None:
    with pytest.raises(EncodeError) as exc:
        pack(value)
    assert (exc.value.path, exc.value.reason) == (path, reason)


def test_a_float_deep_in_a_large_decoded_list_is_refused_with_its_path() -> None:
    items = [b"t" * 40] * 5000
    assert unpack(pack([1, items]), max_size=1 << 20) == [1, items]
    data = msgpack.packb([1, [*items[:4000], 2.5, *items[4000:]]], use_bin_type=True)
    with pytest.raises(DecodeError) as exc:
        unpack(data, max_size=1 << 20, field="block")
    assert exc.value.field == "block[1][4000]" and "float" in str(exc.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (msgpack.packb(1.5), "float"),
        (msgpack.packb({1: 2}), "max_map_len"),
        (msgpack.packb(True), "bool"),
        (b"\xcd\x00\x01", "canonical"),  # 1 as uint16: a second spelling of the same value
        (msgpack.packb([1]) + b"\x00", "trailing"),
        (b"\xa2\xff\xfe", "UTF-8"),
        (b"\xd4\x01\x00", "ext"),
        (b"\x92\x01", "malformed"),  # truncated array
    ],
)
def test_unpack_rejects_hostile_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        unpack(data, max_size=100, field="thing")
    assert exc.value.field.startswith("thing")
    assert reason in str(exc.value)


def test_unpack_enforces_size_and_container_limits() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit"):
        unpack(pack(b"x" * 200), max_size=100)
    with pytest.raises(DecodeError, match="max_array_len"):
        unpack(pack(list(range(20))), max_size=1000, max_container_len=10)
    with pytest.raises(DecodeError, match="expected bytes"):
        unpack("text", max_size=100)  # type: ignore[arg-type]


def test_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    data = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(DecodeError):
        unpack(data, max_size=1 << 20)
