"""ledger.crypto: BLAKE2b-256 as the ledger uses it (every id and root hangs on it) and Ed25519 verification."""

from __future__ import annotations

import hashlib
import threading

from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from ledger.crypto import blake2b256, verify


def test_blake2b256_is_the_rfc_7693_function_with_a_32_byte_digest() -> None:
    assert blake2b256(b"abc").hex() == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
    assert blake2b256(b"").hex() == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"


@given(st.binary(max_size=4096))
def test_blake2b256_never_carries_state_from_one_call_to_the_next(data: bytes) -> None:
    blake2b256(b"something else first")
    assert blake2b256(data) == hashlib.blake2b(data, digest_size=32).digest()


def test_blake2b256_from_many_threads_at_once_agrees_with_hashlib() -> None:
    inputs = [bytes([i]) * (i * 37 % 1500) for i in range(256)]
    wrong: list[bytes] = []

    def work() -> None:
        for _ in range(20):
            for d in inputs:
                if blake2b256(d) != hashlib.blake2b(d, digest_size=32).digest():
                    wrong.append(d)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_verify_takes_a_good_signature_and_refuses_any_other() -> None:
    key = SigningKey(bytes(range(32)))
    sig = key.sign(b"msg").signature
    pub = bytes(key.verify_key)
    assert verify(pub, b"msg", sig)
    assert not verify(pub, b"msh", sig)
    assert not verify(pub, b"msg", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not verify(pub[:-1], b"msg", sig)
