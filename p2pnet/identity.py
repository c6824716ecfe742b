"""Ed25519 identities, their key files, and libp2p-style peer ids (``12D3KooW…``).

A peer id is the identity multihash (code 0x00) of the protobuf ``PublicKey {Type: Ed25519, Data: 32 bytes}``,
written in base58btc, exactly as libp2p's peer-ids spec does for Ed25519 keys. Inside the ledger an account is the
raw 32-byte public key; this module is the one place that turns it into the text people see.

Key files hold libp2p's ``PrivateKey`` protobuf (``Type: Ed25519``, ``Data: seed ‖ public key``, 68 bytes), are
created with mode 0600 on first run, and are refused if malformed or readable by group or others.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing

from p2pnet.errors import IdentityError, InvalidPeerId, KeyFileError

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}

# protobuf tags: field 1 varint (Type), field 2 length-delimited (Data)
_KEYTYPE_ED25519 = 1
_PUBKEY_PREFIX = bytes([0x08, _KEYTYPE_ED25519, 0x12, 32])
_PRIVKEY_PREFIX = bytes([0x08, _KEYTYPE_ED25519, 0x12, 64])
_MULTIHASH_IDENTITY = 0x00
_MAX_PEER_ID_TEXT = 128


def b58encode(data: bytes) -> str:
    """Base58btc text of ``data`` (leading zero bytes become ``1``)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Bytes of base58btc ``text``; raises ``ValueError`` naming the first bad character."""
    n = 0
    for pos, ch in enumerate(text):
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise ValueError(f"character {ch!r} at position {pos} is not base58btc")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def encode_public_key_protobuf(public_key: bytes) -> bytes:
    """libp2p's ``PublicKey`` protobuf for a raw 32-byte Ed25519 key."""
    if len(public_key) != 32:
        raise IdentityError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return _PUBKEY_PREFIX + public_key


def decode_public_key_protobuf(data: bytes) -> bytes:
    """The raw 32-byte Ed25519 key inside a ``PublicKey`` protobuf; :class:`InvalidPeerId` otherwise."""
    if len(data) < 4 or data[0] != 0x08 or data[2] != 0x12:
        raise InvalidPeerId(data, "not a libp2p PublicKey protobuf")
    if data[1] != _KEYTYPE_ED25519:
        raise InvalidPeerId(data, f"key type {data[1]} is not Ed25519 (1)")
    if data[3] != 32 or len(data) != 36:
        raise InvalidPeerId(data, f"Ed25519 key data must be 32 bytes, got {len(data) - 4}")
    return bytes(data[4:])


@dataclass(frozen=True, slots=True)
class PeerId:
    """A peer's identity: its raw Ed25519 public key, shown as libp2p's base58btc text."""

    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise InvalidPeerId(self.public_key, "an Ed25519 public key is 32 bytes")

    @classmethod
    def from_public_key(cls, raw: bytes) -> PeerId:
        """The peer id of a raw 32-byte Ed25519 public key."""
        return cls(bytes(raw))

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerId:
        """Decode the binary form (identity multihash of the key protobuf)."""
        if len(data) < 2:
            raise InvalidPeerId(data, "too short for a multihash")
        if data[0] != _MULTIHASH_IDENTITY:
            raise InvalidPeerId(data, f"multihash code 0x{data[0]:02x} is not identity (0x00)")
        if data[1] != len(data) - 2:
            raise InvalidPeerId(data, f"multihash length {data[1]} but {len(data) - 2} bytes follow")
        return cls(decode_public_key_protobuf(data[2:]))

    @classmethod
    def from_string(cls, text: str) -> PeerId:
        """Parse ``12D3KooW…`` text; :class:`InvalidPeerId` says what is wrong with it."""
        if not isinstance(text, str) or not text:
            raise InvalidPeerId(text, "empty or not a string")
        if len(text) > _MAX_PEER_ID_TEXT:
            raise InvalidPeerId(text[:20] + "…", f"longer than {_MAX_PEER_ID_TEXT} characters")
        try:
            raw = b58decode(text)
        except ValueError as exc:
            raise InvalidPeerId(text, f"bad base58btc: {exc}") from None
        return cls.from_bytes(raw)

    def to_bytes(self) -> bytes:
        """The binary form: identity multihash of the ``PublicKey`` protobuf."""
        proto = encode_public_key_protobuf(self.public_key)
        return bytes([_MULTIHASH_IDENTITY, len(proto)]) + proto

    def to_string(self) -> str:
        """The base58btc text (``12D3KooW…``)."""
        return b58encode(self.to_bytes())

    def short(self) -> str:
        """A short form for logs."""
        return self.to_string()[-8:]

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this peer's Ed25519 signature of ``message``."""
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"PeerId({self.to_string()})"


@dataclass(frozen=True)
class Identity:
    """A node's Ed25519 keypair: signs, and names the node on the network and on the ledger."""

    signing_key: nacl.signing.SigningKey
    peer_id: PeerId = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_id", PeerId(bytes(self.signing_key.verify_key)))

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity with this 32-byte Ed25519 seed (deterministic, for tests and vectors)."""
        if len(seed) != 32:
            raise IdentityError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key (the ledger account)."""
        return self.peer_id.public_key

    @property
    def seed(self) -> bytes:
        """The raw 32-byte private seed."""
        return bytes(self.signing_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self.signing_key.sign(message).signature

    def to_private_key_protobuf(self) -> bytes:
        """libp2p's ``PrivateKey`` protobuf (``seed ‖ public key``)."""
        return _PRIVKEY_PREFIX + self.seed + self.public_key

    @classmethod
    def from_private_key_protobuf(cls, data: bytes) -> Identity:
        """Parse libp2p's ``PrivateKey`` protobuf; :class:`IdentityError` if malformed."""
        if len(data) != 68 or data[:4] != _PRIVKEY_PREFIX:
            raise IdentityError("not a 68-byte libp2p Ed25519 PrivateKey protobuf")
        ident = cls.from_seed(bytes(data[4:36]))
        if ident.public_key != bytes(data[36:68]):
            raise IdentityError("the stored public key does not match the private key")
        return ident

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"


def save_identity(identity: Identity, path: str | os.PathLike[str]) -> None:
    """Write ``identity`` to ``path`` with mode 0600, atomically (temp file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # umask or a stale tmp file could have left wider bits
        os.write(fd, identity.to_private_key_protobuf())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


def load_identity(path: str | os.PathLike[str]) -> Identity:
    """Read a key file; :class:`KeyFileError` if it is malformed or readable by group or others."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(str(p), "does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(str(p), "is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(str(p), f"mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600")
    data = p.read_bytes()
    try:
        return Identity.from_private_key_protobuf(data)
    except IdentityError as exc:
        raise KeyFileError(str(p), f"malformed: {exc}") from None


def load_or_create_identity(path: str | os.PathLike[str]) -> Identity:
    """Load the key file at ``path``, creating a fresh identity there (mode 0600) on first run."""
    if not os.path.lexists(path):
        identity = Identity.generate()
        save_identity(identity, path)
        return identity
    return load_identity(path)
