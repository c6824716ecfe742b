"""The Noise XX secure channel (``Noise_XX_25519_ChaChaPoly_SHA256``) as in libp2p's noise spec, sans-IO.

Each side has a fresh X25519 static key per process; the handshake payload carries the Ed25519 identity key and
its signature of ``"noise-libp2p-static-key:" ‖ static key`` (a ``NoiseHandshakePayload`` protobuf), so the
channel is bound to the peer id. On the wire every Noise message is a 2-byte big-endian length and the message.

:class:`NoiseHandshake` is driven by ``receive_data`` / ``bytes_to_send``; when ``complete`` it hands out a
:class:`NoiseSession`, which encrypts a plaintext stream in chunks under the Noise 65535-byte message limit and
decrypts the incoming stream. No I/O, no clock: the trio shell adds the timeout.
"""

from __future__ import annotations

import struct

import nacl.bindings
import nacl.public
from noise.connection import Keypair, NoiseConnection

from p2pnet.errors import DecryptError, HandshakeError, InvalidPeerId, LocalProtocolError, PeerIdMismatch
from p2pnet.identity import Identity, PeerId, decode_public_key_protobuf, encode_public_key_protobuf

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
SIGNATURE_PREFIX = b"noise-libp2p-static-key:"
MAX_NOISE_MESSAGE = 65535
_TAG = 16
MAX_PLAINTEXT_CHUNK = MAX_NOISE_MESSAGE - _TAG
_LEN = struct.Struct(">H")


# Any clamped scalar: X25519 with it gives the all-zero secret exactly for the small-order points.
_PROBE_SCALAR = bytes(range(1, 33))


def is_low_order(public: bytes) -> bool:
    """Whether an X25519 public key has small order: every Diffie-Hellman with it yields the all-zero secret, so
    the Noise spec has implementations refuse it (libsodium refuses exactly these points, all encodings)."""
    try:
        nacl.bindings.crypto_scalarmult(_PROBE_SCALAR, public)
    except RuntimeError:
        return True
    return False


def generate_static_key() -> bytes:
    """A fresh X25519 private key (raw 32 bytes) for the Noise static keypair."""
    return bytes(nacl.public.PrivateKey.generate())


def encode_handshake_payload(identity: Identity, static_public: bytes) -> bytes:
    """libp2p's ``NoiseHandshakePayload {identity_key = 1, identity_sig = 2}``."""
    key = encode_public_key_protobuf(identity.public_key)
    sig = identity.sign(SIGNATURE_PREFIX + static_public)
    return bytes([0x0A, len(key)]) + key + bytes([0x12, len(sig)]) + sig


def decode_handshake_payload(payload: bytes, static_public: bytes) -> PeerId:
    """The peer id proven by ``payload`` for ``static_public``; :class:`HandshakeError` otherwise."""
    fields: dict[int, bytes] = {}
    pos = 0
    try:
        while pos < len(payload):
            tag, pos = _varint(payload, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 2:
                length, pos = _varint(payload, pos)
                if pos + length > len(payload):
                    raise HandshakeError("handshake payload: field runs past the end")
                fields[number] = payload[pos : pos + length]
                pos += length
            elif wire == 0:
                _, pos = _varint(payload, pos)
            else:
                raise HandshakeError(f"handshake payload: unsupported wire type {wire}")
    except IndexError:
        raise HandshakeError("handshake payload: truncated varint") from None
    if 1 not in fields or 2 not in fields:
        raise HandshakeError("handshake payload lacks identity_key or identity_sig")
    try:
        peer = PeerId(decode_public_key_protobuf(fields[1]))
    except InvalidPeerId as exc:
        raise HandshakeError(f"handshake payload: {exc.reason}") from None
    if not peer.verify(SIGNATURE_PREFIX + static_public, fields[2]):
        raise HandshakeError(f"handshake payload: {peer} did not sign the Noise static key")
    return peer


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise HandshakeError("handshake payload: varint too long")


class _LengthPrefixed:
    """Splits a stream into 2-byte-length-prefixed Noise messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        n = (buf[0] << 8) | buf[1]
        if len(buf) < 2 + n:
            return None
        msg = bytes(buf[2 : 2 + n])
        del buf[: 2 + n]
        return msg

    @property
    def pending(self) -> int:
        return len(self._buf)


class NoiseHandshake:
    """One side of the XX handshake. Initiator: ``-> e``, ``<- e, ee, s, es``, ``-> s, se``."""

    def __init__(
        self,
        identity: Identity,
        *,
        initiator: bool,
        expected_peer: PeerId | None = None,
        static_key: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.initiator = initiator
        self.expected_peer = expected_peer
        self.remote_peer: PeerId | None = None
        self.complete = False
        self._out = bytearray()
        self._in = _LengthPrefixed()
        self._noise = NoiseConnection.from_name(PROTOCOL_NAME)
        static = static_key if static_key is not None else generate_static_key()
        self._noise.set_keypair_from_private_bytes(Keypair.STATIC, static)
        self._static_public = bytes(nacl.public.PrivateKey(static).public_key)
        if initiator:
            self._noise.set_as_initiator()
        else:
            self._noise.set_as_responder()
        self._noise.start_handshake()
        # noiseprotocol deletes its handshake state when done; keep it to read the remote static key
        self._hs = self._noise.noise_protocol.handshake_state
        self._step = 0
        if initiator:
            self._write(b"")

    def bytes_to_send(self) -> bytes:
        """Bytes the shell must send now (may be empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the remote; raises :class:`HandshakeError` / :class:`PeerIdMismatch` on failure."""
        if self.complete:
            raise LocalProtocolError("handshake already complete")
        self._in.feed(data)
        while not self.complete and (msg := self._in.next()) is not None:
            self._on_message(msg)

    def _write(self, payload: bytes) -> None:
        try:
            msg = self._noise.write_message(payload)
        except Exception as exc:  # a DH with the remote's key failed: the remote's key, not ours, is at fault
            raise HandshakeError(f"cannot answer the remote's handshake: {type(exc).__name__}: {exc}") from None
        self._out += _LEN.pack(len(msg)) + msg

    def _refuse_low_order(self, which: str, key: object) -> None:
        public = getattr(key, "public_bytes", None)
        if isinstance(public, bytes) and is_low_order(public):
            raise HandshakeError(f"remote {which} key is a low-order X25519 point")

    def _read(self, msg: bytes) -> bytes:
        try:
            return bytes(self._noise.read_message(msg))
        except Exception as exc:  # noiseprotocol and cryptography raise a zoo of types (InvalidTag, …)
            raise HandshakeError(f"bad handshake message: {type(exc).__name__}") from None

    def _prove(self) -> bytes:
        return encode_handshake_payload(self.identity, self._static_public)

    def _check(self, payload: bytes) -> None:
        rs = self._hs.rs
        if rs is None:
            raise HandshakeError("remote sent no static key")
        peer = decode_handshake_payload(payload, rs.public_bytes)
        if self.expected_peer is not None and peer != self.expected_peer:
            raise PeerIdMismatch(self.expected_peer, peer)
        self.remote_peer = peer

    def _on_message(self, msg: bytes) -> None:
        step = self._step
        self._step += 1
        if self.initiator:
            if step != 0:
                raise HandshakeError("unexpected extra handshake message")
            self._check(self._read(msg))  # <- e, ee, s, es + responder's proof
            self._write(self._prove())  # -> s, se + our proof
            self.complete = True
        elif step == 0:
            self._read(msg)  # -> e
            self._refuse_low_order("ephemeral", self._hs.re)  # before any DH with it
            self._write(self._prove())
        elif step == 1:
            self._check(self._read(msg))
            self.complete = True
        else:
            raise HandshakeError("unexpected extra handshake message")

    def session(self) -> NoiseSession:
        """The transport session (only once ``complete``)."""
        if not self.complete or self.remote_peer is None:
            raise LocalProtocolError("handshake not complete")
        proto = self._noise.noise_protocol
        session = NoiseSession(
            self.remote_peer, proto.cipher_state_encrypt, proto.cipher_state_decrypt, self._noise.get_handshake_hash()
        )
        # transport messages may arrive in the same read as the last handshake message
        session.receive_data(bytes(self._in._buf))
        self._in._buf.clear()
        return session




class NoiseSession:
    """Transport phase: ``encrypt`` a plaintext stream into wire bytes; ``receive_data``/``next_plaintext``."""

    def __init__(
        self, remote_peer: PeerId, encrypt_state: object, decrypt_state: object, handshake_hash: bytes = b""
    ) -> None:
        self.remote_peer = remote_peer
        # The same on both ends and unique per connection: what duplicate resolution compares.
        self.handshake_hash = handshake_hash
        self._enc = encrypt_state
        self._dec = decrypt_state
        self._in = _LengthPrefixed()

    def encrypt(self, plaintext: bytes) -> bytes:
        """Wire bytes for ``plaintext``: as few Noise messages as the 65535-byte limit allows."""
        enc = self._enc.encrypt_with_ad  # type: ignore[attr-defined]
        if len(plaintext) <= MAX_PLAINTEXT_CHUNK:
            ct = enc(None, plaintext)
            return _LEN.pack(len(ct)) + ct
        view = memoryview(plaintext)
        parts = []
        for i in range(0, len(plaintext), MAX_PLAINTEXT_CHUNK):
            ct = enc(None, bytes(view[i : i + MAX_PLAINTEXT_CHUNK]))
            parts.append(_LEN.pack(len(ct)))
            parts.append(ct)
        return b"".join(parts)

    def receive_data(self, data: bytes) -> None:
        """Feed wire bytes from the remote."""
        self._in.feed(data)

    def next_plaintext(self) -> bytes | None:
        """The next decrypted chunk, or None until more bytes arrive; :class:`DecryptError` if forged."""
        msg = self._in.next()
        if msg is None:
            return None
        if len(msg) < _TAG:
            raise DecryptError(f"noise message of {len(msg)} bytes is shorter than its tag")
        try:
            return self._dec.decrypt_with_ad(None, msg)  # type: ignore[attr-defined]
        except Exception as exc:  # InvalidTag from cryptography, nonce exhaustion from noise
            raise DecryptError(f"noise message failed authentication ({type(exc).__name__})") from None

    @property
    def pending(self) -> int:
        """Bytes of an unfinished Noise message."""
        return self._in.pending
