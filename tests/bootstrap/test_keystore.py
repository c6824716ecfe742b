"""Named keys on disk: created on first use, private to their owner, sealed by an optional passphrase."""

import json
import os

import nacl.pwhash
import pytest

from bootstrap.home import Keystore, KeystoreError, WrongPassphrase


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    """Argon2id at its minimum cost keeps the tests quick; the parameters are stored in the file either way."""
    monkeypatch.setattr(nacl.pwhash.argon2id, "OPSLIMIT_INTERACTIVE", nacl.pwhash.argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(nacl.pwhash.argon2id, "MEMLIMIT_INTERACTIVE", nacl.pwhash.argon2id.MEMLIMIT_MIN)


def test_key_is_created_once_and_reloaded(tmp_path):
    store = Keystore(tmp_path / "keys")
    key = store.get_or_create("alice")
    assert os.stat(store.path("alice")).st_mode & 0o777 == 0o600
    again = Keystore(tmp_path / "keys").get_or_create("alice")
    assert again.encode() == key.encode()
    assert store.names() == ["alice"]


def test_create_refuses_to_overwrite(tmp_path):
    store = Keystore(tmp_path)
    store.create("bob")
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore(tmp_path).create("bob")


def test_passphrase_seals_the_seed(tmp_path):
    store = Keystore(tmp_path, passphrase="correct horse")
    key = store.create("carol")
    text = store.path("carol").read_text()
    assert key.encode().hex() not in text
    assert json.loads(text)["kdf"] == "argon2id"
    assert Keystore(tmp_path, passphrase="correct horse").load("carol").encode() == key.encode()
    with pytest.raises(WrongPassphrase):
        Keystore(tmp_path, passphrase="wrong").load("carol")
    with pytest.raises(WrongPassphrase, match="passphrase is needed"):
        Keystore(tmp_path).load("carol")


def test_readable_by_others_is_refused(tmp_path):
    store = Keystore(tmp_path)
    store.create("dave")
    os.chmod(store.path("dave"), 0o644)
    with pytest.raises(KeystoreError, match="accessible by others"):
        Keystore(tmp_path).load("dave")


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", "x" * 65, ".."])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(KeystoreError, match="invalid key name"):
        Keystore(tmp_path).get_or_create(name)


def test_tampered_file_is_reported(tmp_path):
    store = Keystore(tmp_path)
    store.create("erin")
    doc = json.loads(store.path("erin").read_text())
    doc["public_key"] = "00" * 32
    store.path("erin").write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="does not match"):
        Keystore(tmp_path).load("erin")
    store.path("erin").write_text("{not json")
    with pytest.raises(KeystoreError, match="unreadable"):
        Keystore(tmp_path).load("erin")
