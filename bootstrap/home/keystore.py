"""Named local keys (wallets such as ``alice``) kept in a node's home, optionally encrypted at rest.

A key file is JSON holding the Ed25519 seed, either in the clear (the file is still readable only by its owner) or
sealed with a passphrase: argon2id stretches the passphrase into a key for a SecretBox (XSalsa20-Poly1305).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ACCOUNT_LIKE = re.compile(r"^[0-9A-Fa-f]{64}$")
FORMAT_VERSION = 1


class KeystoreError(Exception):
    """A key could not be created, read or unlocked; the message says which key and why."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open this key file."""


def check_key_name(name: str) -> str:
    """Return ``name`` if it can name a key file, else raise: names become file names, so they are restricted."""
    if not KEY_NAME.match(name) or name in {".", ".."}:
        raise KeystoreError(f"invalid key name {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
    if ACCOUNT_LIKE.match(name) or name.startswith("12D3KooW"):
        # The node reads such a name as an account or a peer id, never as this key: funds sent "to" the name
        # would go to another account than the key that signs for it.
        raise KeystoreError(f"invalid key name {name!r}: it reads as an account (64 hex) or a peer id (12D3KooW…)")
    return name


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (power loss included: the file, then its directory
    entry, are fsynced), readable and writable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a file creation in ``path`` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_seed(seed: bytes, passphrase: str | None, *, opslimit: int | None = None, memlimit: int | None = None) -> dict:
    """The JSON document for one key: the seed in the clear, or sealed under the passphrase."""
    public = nacl.signing.SigningKey(seed).verify_key.encode().hex()
    if passphrase is None:
        return {"version": FORMAT_VERSION, "public_key": public, "kdf": "none", "seed": seed.hex()}
    ops = opslimit if opslimit is not None else nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    mem = memlimit if memlimit is not None else nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    size = nacl.secret.SecretBox.KEY_SIZE
    key = nacl.pwhash.argon2id.kdf(size, passphrase.encode(), salt, opslimit=ops, memlimit=mem)
    sealed = nacl.secret.SecretBox(key).encrypt(seed)
    return {
        "version": FORMAT_VERSION,
        "public_key": public,
        "kdf": "argon2id",
        "salt": salt.hex(),
        "opslimit": ops,
        "memlimit": mem,
        "sealed": bytes(sealed).hex(),
    }


def open_seed(doc: dict, passphrase: str | None, *, where: str = "key") -> bytes:
    """The seed inside a key document; raises ``WrongPassphrase`` or ``KeystoreError`` naming ``where``."""
    try:
        if doc.get("version") != FORMAT_VERSION:
            raise KeystoreError(f"{where}: unsupported key file version {doc.get('version')!r}")
        kdf = doc.get("kdf")
        if kdf == "none":
            seed = bytes.fromhex(doc["seed"])
        elif kdf == "argon2id":
            if passphrase is None:
                raise WrongPassphrase(f"{where} is encrypted: a passphrase is needed")
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase.encode(),
                bytes.fromhex(doc["salt"]),
                opslimit=int(doc["opslimit"]),
                memlimit=int(doc["memlimit"]),
            )
            try:
                seed = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(doc["sealed"]))
            except nacl.exceptions.CryptoError:
                raise WrongPassphrase(f"wrong passphrase for {where}") from None
        else:
            raise KeystoreError(f"{where}: unknown kdf {kdf!r}")
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"{where} is malformed: {exc!r}") from None
    if len(seed) != 32:
        raise KeystoreError(f"{where} is malformed: seed is {len(seed)} bytes, expected 32")
    if nacl.signing.SigningKey(seed).verify_key.encode().hex() != doc.get("public_key"):
        raise KeystoreError(f"{where} is corrupt: its seed does not match its public key")
    return seed


class Keystore:
    """The named keys of one node home (``<home>/keys/<name>.json``), created on first use."""

    def __init__(self, directory: Path, passphrase: str | None = None) -> None:
        self.directory = Path(directory)
        self.passphrase = passphrase
        self._cache: dict[str, nacl.signing.SigningKey] = {}

    def path(self, name: str) -> Path:
        return self.directory / f"{check_key_name(name)}.json"

    def names(self) -> list[str]:
        """Names of the keys on disk, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def exists(self, name: str) -> bool:
        return name in self._cache or self.path(name).exists()

    def create(self, name: str, seed: bytes | None = None) -> nacl.signing.SigningKey:
        """Create key ``name``; raises if it exists, so a key is never silently replaced."""
        path = self.path(name)
        if path.exists():
            raise KeystoreError(f"key {name!r} already exists at {path}")
        seed = seed if seed is not None else nacl.utils.random(32)
        write_private(path, json.dumps(seal_seed(seed, self.passphrase), indent=1).encode())
        key = nacl.signing.SigningKey(seed)
        self._cache[name] = key
        return key

    def load(self, name: str) -> nacl.signing.SigningKey:
        """Load key ``name``; refuses a file that others can read, since it holds a private key."""
        if name in self._cache:
            return self._cache[name]
        path = self.path(name)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeystoreError(f"no key named {name!r} in {self.directory}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystoreError(f"key file {path} is accessible by others (mode {oct(mode & 0o777)}); chmod 600 it")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"key file {path} is unreadable: {exc}") from None
        key = nacl.signing.SigningKey(open_seed(doc, self.passphrase, where=f"key {name!r}"))
        self._cache[name] = key
        return key

    def get_or_create(self, name: str) -> nacl.signing.SigningKey:
        """The key ``name``, created on first use."""
        return self.load(name) if self.exists(name) else self.create(name)
