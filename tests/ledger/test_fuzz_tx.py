"""Fuzzing the transaction decoder (``decode_signed_tx``, ``decode_tx_body``) and canonical MessagePack
(``ledger.encoding.unpack``): random bytes and mutants of valid signed txs of every kind raise ``DecodeError``
and nothing else; whatever decodes is canonical (re-encodes to the very bytes it came from, so a tx has one id).

Bounded by the Hypothesis profile; ``bench/fuzz_long.py`` runs ``TARGETS`` for longer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.crypto import blake2b256, signing_key_from_seed
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError
from ledger.tx import (
    MAX_SALT_LEN,
    PAYLOAD_TYPES,
    Payload,
    SignedTx,
    Tx,
    _split_canonical,
    decode_signed_tx,
    decode_tx_body,
    make_tx,
    verify_tx_signature,
)
from tests.fuzzing import FUZZ, Target, target_tests

CHAIN_ID = "dacn-fuzz"

_u64 = st.integers(0, 2**64 - 1)
_h32 = st.binary(min_size=32, max_size=32)


def _utf8(n: int) -> st.SearchStrategy[str]:
    return st.text(max_size=n).filter(lambda s: len(s.encode()) <= n)


# Field name -> strategy for a valid value; every field of every kind must be listed (checked below).
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{name: _h32 for name in ("to", "spender", "owner", "params_digest", "dataset_digest", "job_id", "commitment",
                               "fingerprint", "artifact_digest")},
    **{name: _u64 for name in ("amount", "stake", "memory_mb", "capacity", "reward", "verification_fee",
                               "tolerance_abs", "tolerance_ppm", "min_memory_mb", "bid_window", "commit_window",
                               "reveal_window", "price", "until", "time_limit_ms", "outcome", "max_time_ms")},
    "device_kind": _utf8(16),
    "device": _utf8(16),
    "assign": st.sampled_from(["", "bids", "offers"]) | _utf8(16),
    "device_name": _utf8(128),
    "model": _utf8(128),
    "summary": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40),
    "salt": st.binary(min_size=16, max_size=MAX_SALT_LEN),
    "operator": st.sampled_from([b""]) | _h32,
}


def payloads() -> st.SearchStrategy[Payload]:
    return st.one_of(
        [st.builds(cls, *(FIELD_VALUES[name] for name, _check in cls.FIELDS)) for cls in PAYLOAD_TYPES]
    )


signed_txs = st.builds(
    lambda seed, payload, nonce, fee: make_tx(payload, signing_key_from_seed(seed), CHAIN_ID, nonce=nonce, fee=fee),
    st.binary(min_size=32, max_size=32),
    payloads(),
    _u64,
    _u64,
)


def _check_signed(stx: SignedTx, data: bytes) -> None:
    assert pack([stx.body_bytes, stx.signature]) == data
    assert stx.encode() == data and stx.tx_id == blake2b256(data)
    assert stx.tx.encode_body() == stx.body_bytes  # the typed tx keeps every bit of the body
    assert decode_tx_body(stx.body_bytes) == stx.tx


def _check_body(tx: Tx, data: bytes) -> None:
    assert tx.encode_body() == data


def _check_canonical(obj: Any, data: bytes) -> None:
    assert pack(obj) == data


# Canonical MessagePack over structures like the ledger's (ints, bytes, str, None, nested lists).
_canonical_values = st.recursive(
    st.none() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=16,
)

TARGETS = [
    Target("ledger.decode_signed_tx", decode_signed_tx, (DecodeError,), signed_txs.map(SignedTx.encode),
           _check_signed),
    Target("ledger.decode_tx_body", decode_tx_body, (DecodeError,), signed_txs.map(lambda s: s.body_bytes),
           _check_body),
    Target("ledger.encoding.unpack", lambda data: unpack(data, max_size=8192), (DecodeError,),
           _canonical_values.map(pack), _check_canonical),
]


def test_every_field_of_every_kind_has_a_generator() -> None:
    missing = {f"{cls.KIND}.{name}" for cls in PAYLOAD_TYPES for name, _ in cls.FIELDS if name not in FIELD_VALUES}
    assert not missing


test_fuzzed_input_raises_only_the_typed_error, test_valid_input_decodes_and_round_trips = target_tests(TARGETS)


@FUZZ
@given(signed_txs)
def test_a_valid_tx_decodes_to_itself_and_its_signature_verifies(stx: SignedTx) -> None:
    got = decode_signed_tx(stx.encode())
    assert got == stx and got.tx == stx.tx and got.tx_id == stx.tx_id
    verify_tx_signature(got, CHAIN_ID)


@FUZZ
@given(signed_txs, st.data())
def test_a_mutated_tx_that_still_decodes_is_a_different_tx(stx: SignedTx, data: st.DataObject) -> None:
    raw = bytearray(stx.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        got = decode_signed_tx(bytes(raw))
    except DecodeError as exc:
        assert exc.field and exc.reason  # the error names what was wrong
        return
    # Canonical decoding: different bytes are a different tx id, never a second spelling of the same tx.
    assert got.tx_id != stx.tx_id
    assert got.encode() == bytes(raw)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "tx"),
        (pack([b"x", bytes(64)]), "tx.body"),
        (pack([pack([1, 99, bytes(32), 0, 0, []]), bytes(64)]), "tx.kind"),
        (pack([pack([2, 1, bytes(32), 0, 0, [bytes(32), 1]]), bytes(64)]), "tx.version"),
        (pack([pack([1, 1, bytes(31), 0, 0, [bytes(32), 1]]), bytes(64)]), "tx.sender"),
        (pack([pack([1, 1, bytes(32), 0, 0, [bytes(32), 1]]), bytes(63)]), "tx.signature"),
        (bytes(9000), "tx"),
    ],
)
def test_invalid_txs_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_signed_tx(data)
    assert info.value.field == field


def _split_by_unpacking(data: bytes) -> tuple[bytes, bytes] | None:
    """What ``_split_canonical`` must agree with: the full canonical unpack of the outer ``[body, signature]``."""
    try:
        obj = unpack(data, max_size=8192, field="tx")
    except DecodeError:
        return None
    if type(obj) is list and len(obj) == 2 and type(obj[0]) is bytes and type(obj[1]) is bytes and len(obj[1]) == 64:
        return obj[0], obj[1]
    return None


@FUZZ
@given(signed_txs, st.data())
def test_the_hand_read_outer_list_agrees_with_unpacking(stx: SignedTx, data: st.DataObject) -> None:
    raw = bytearray(stx.encode())
    # Mutate the outer framing mostly (the first bytes and the signature's header), sometimes anywhere.
    sig_header = len(raw) - 66
    i = data.draw(st.sampled_from([0, 1, 2, 3, sig_header, sig_header + 1]) | st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, 2))
    mutated = bytes(raw[: len(raw) - cut]) if cut else bytes(raw)
    assert _split_canonical(stx.encode()) == (stx.body_bytes, stx.signature)
    assert _split_canonical(mutated) == _split_by_unpacking(mutated)


def test_a_short_body_spelled_as_bin16_is_not_canonical() -> None:
    stx = make_tx(PAYLOAD_TYPES[0](bytes(32), 5), signing_key_from_seed(bytes(32)), CHAIN_ID, nonce=0, fee=1)
    body = stx.body_bytes
    assert len(body) < 256
    spelled = b"\x92\xc5" + len(body).to_bytes(2) + body + b"\xc4\x40" + stx.signature
    assert _split_canonical(spelled) is None
    with pytest.raises(DecodeError, match="canonical"):
        decode_signed_tx(spelled)
