"""Transactions: signing, ids, canonical encoding, strict decoding naming the bad field, and signature checks."""

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.crypto import blake2b256, verify
from ledger.encoding import pack
from ledger.errors import BadSignature, DecodeError
from ledger.tx import (
    MAX_TX_BYTES,
    PAYLOAD_TYPES,
    SIGN_DOMAIN,
    TX_VERSION,
    Bid,
    RevealResult,
    SubmitJob,
    Transfer,
    Tx,
    compute_commitment,
    decode_signed_tx,
    make_tx,
    sign_tx,
    signing_message,
    verify_tx_signature,
)
from tests.ledger.factories import CHAIN_ID, Wallet, account, key

D = blake2b256(b"d")
SAMPLES = [
    Wallet("a").transfer(account("b"), 5),
    Wallet("a").approve(account("b"), 7),
    Wallet("a").transfer_from(account("b"), account("c"), 3),
    Wallet("a").register_worker(5000, "gpu"),
    Wallet("a").add_stake(10),
    Wallet("a").unbond(10),
    Wallet("a").submit_job(tolerance_ppm=5),
    Wallet("a").bid(D, 10),
    Wallet("a").commit(D, [1, -2]),
    Wallet("a").reveal(D, [1, -2]),
    Wallet("a").cancel(D),
    Wallet("a").offer(7, 40),
    Wallet("a").submit_job(assign="offers"),
    Wallet("a").confirm(D, D),
]


def test_samples_cover_every_kind() -> None:
    assert {s.kind for s in SAMPLES} == {p.KIND for p in PAYLOAD_TYPES}


@pytest.mark.parametrize("stx", SAMPLES, ids=lambda s: s.kind)
def test_encode_decode_round_trip_keeps_id_and_signature(stx) -> None:
    data = stx.encode()
    assert len(data) <= MAX_TX_BYTES
    back = decode_signed_tx(data)
    assert back == stx
    assert back.tx == stx.tx
    assert back.tx_id == stx.tx_id == blake2b256(data)
    verify_tx_signature(back, CHAIN_ID)


def test_signature_covers_domain_chain_id_and_body() -> None:
    stx = SAMPLES[0]
    assert verify(stx.sender, SIGN_DOMAIN + pack(CHAIN_ID) + stx.body_bytes, stx.signature)
    assert signing_message(CHAIN_ID, stx.body_bytes) == SIGN_DOMAIN + pack(CHAIN_ID) + stx.body_bytes
    with pytest.raises(BadSignature) as exc:
        verify_tx_signature(stx, "other-chain")
    assert exc.value.tx_id == stx.tx_id


def test_tampered_body_fails_signature() -> None:
    stx = SAMPLES[0]
    body = msgpack.unpackb(stx.body_bytes)
    body[5][1] = 6  # amount 5 -> 6
    forged = pack([pack(body), stx.signature])
    with pytest.raises(BadSignature):
        verify_tx_signature(decode_signed_tx(forged), CHAIN_ID)


def test_sign_tx_rejects_a_key_that_is_not_the_sender() -> None:
    with pytest.raises(ValueError, match="sender"):
        sign_tx(Tx(account("a"), 0, 1, Transfer(account("b"), 1)), key("b"), CHAIN_ID)


def test_different_nonce_different_id() -> None:
    a = make_tx(Transfer(account("b"), 1), key("a"), CHAIN_ID, nonce=0, fee=1)
    b = make_tx(Transfer(account("b"), 1), key("a"), CHAIN_ID, nonce=1, fee=1)
    assert a.tx_id != b.tx_id


def _body(kind: int = 1, fields: list | None = None, sender: bytes | None = None, nonce: object = 0,
          version: int = TX_VERSION) -> bytes:
    fields = [account("b"), 5] if fields is None else fields
    return pack([pack([version, kind, sender or account("a"), nonce, 1, fields]), b"\x00" * 64])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (pack([b"x"]), "tx"),
        (pack([b"x", b"\x00" * 63]), "tx.signature"),
        (pack(["notbytes", b"\x00" * 64]), "tx.body"),
        (_body(version=2), "tx.version"),
        (_body(kind=99), "tx.kind"),
        (_body(sender=b"\x01" * 31), "tx.sender"),
        (_body(nonce=-1), "tx.nonce"),
        (_body(fields=[account("b")]), "transfer"),
        (_body(fields=[b"short", 5]), "transfer.to"),
        (_body(fields=[account("b"), "5"]), "transfer.amount"),
        (_body(kind=10, fields=[D, [1, "x"], D, b"s" * 16, 0]), "reveal_result.summary[1]"),
        (_body(kind=10, fields=[D, [2**63], D, b"s" * 16, 0]), "reveal_result.summary[0]"),
        (_body(kind=10, fields=[D, [1], D, b"s" * 8, 0]), "reveal_result.salt"),
        (_body(kind=7, fields=["m" * 200, D, D, 1, 1, 0, 0, "any", 0, 0, 0, 0, "", 0]), "submit_job.model"),
        (_body(kind=7, fields=["m", D, D, 1, 1, 0, 0, "any", 0, 0, 0, 0, 1, 0]), "submit_job.assign"),
        (_body(kind=12, fields=[5, -1, 0]), "offer.until"),
        (b"\x00" * (MAX_TX_BYTES + 1), "tx"),
    ],
)
def test_decode_names_the_bad_field(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_signed_tx(data)
    assert exc.value.field == field


def test_decode_rejects_non_canonical_outer_encoding() -> None:
    stx = SAMPLES[0]
    # Same value, with the 64-byte signature's bin length spelled as bin16 instead of bin8.
    data = stx.encode()
    idx = data.rindex(b"\xc4\x40")
    spelled = data[:idx] + b"\xc5\x00\x40" + data[idx + 2 :]
    with pytest.raises(DecodeError, match="canonical"):
        decode_signed_tx(spelled)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_signed_tx(data)


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20), st.binary(min_size=16, max_size=64))
def test_commitment_binds_job_committer_summary_and_salt(summary: list[int], salt: bytes) -> None:
    job, me, other = blake2b256(b"job"), account("a"), account("b")
    c = compute_commitment(job, me, summary, D, salt)
    assert c == blake2b256(pack(["dacn/commitment/v1", job, me, summary, D]) + salt)
    assert compute_commitment(job, me, [*summary, 0], D, salt) != c
    assert compute_commitment(job, me, summary, D, salt + b"x") != c
    # A copied commitment cannot be opened by the copier, nor reused for another job.
    assert compute_commitment(job, other, summary, D, salt) != c
    assert compute_commitment(blake2b256(b"job2"), me, summary, D, salt) != c


def test_payload_spend_is_what_the_sender_pays_beyond_the_fee() -> None:
    assert Transfer(account("b"), 5).spend() == 5
    assert Bid(D, 99).spend() == 0
    assert SubmitJob("m", D, D, 100, 30, 0, 0).spend() == 130
    assert RevealResult(D, [1], D, b"s" * 16).spend() == 0


@pytest.mark.parametrize("stx", SAMPLES, ids=lambda s: s.kind)
def test_spend_is_the_sum_of_the_declared_spend_fields_for_every_kind(stx) -> None:
    p = stx.payload
    assert p.spend() == sum(getattr(p, name) for name in p.SPENDS)
