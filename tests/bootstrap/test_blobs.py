"""The content-addressed blob store and the event bus."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bootstrap.errors import BlobTooLarge, NodeError
from bootstrap.jobs import BlobStore
from bootstrap.node import EventBus
from p2pnet import blob_digest


def test_put_get_by_digest_and_idempotence(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_bytes=1000)
    assert store.get(bytes(32)) is None and not store.has(bytes(32))
    d = store.put(b"hello")
    assert d == blob_digest(b"hello")
    assert store.get(d) == b"hello" and store.size(d) == 5 and store.verify(d)
    assert store.put(b"hello") == d and store.digests() == [d]
    assert BlobStore(tmp_path).get(d) == b"hello"  # on disk, not in memory
    assert not list(tmp_path.rglob("*.tmp"))


def test_bad_blobs_are_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_bytes=10)
    with pytest.raises(BlobTooLarge):
        store.put(b"x" * 11)
    with pytest.raises(NodeError):
        store.put_expected(b"abc", blob_digest(b"abd"))
    assert store.get(b"short") is None  # a peer asking with a malformed digest gets "not here"
    d = store.put(b"abc")
    (tmp_path / d.hex()[:2] / d.hex()).write_bytes(b"abz")
    assert not store.verify(d)


async def test_event_bus_fans_out_and_drops_slow_subscribers_with_a_count() -> None:
    bus = EventBus(buffer=4)
    fast = bus.subscribe()
    slow = bus.subscribe(buffer=2)
    for i in range(3):
        bus.publish({"type": "block", "height": i})
        assert (await fast.receive())["height"] == i
    assert bus.dropped_subscribers == 1 and bus.subscribers == 1
    got = [slow.receive_nowait()["height"] for _ in range(2)]
    assert got == [0, 1]
    with pytest.raises(trio.EndOfChannel):
        await slow.receive()
    fast.close()
    bus.publish({"type": "block", "height": 9})  # a reader that left is forgotten, not counted as slow
    assert bus.subscribers == 0 and bus.dropped_subscribers == 1


def test_read_chunk_reads_a_range_and_reports_the_size(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = bytes(range(256)) * 40
    digest = store.put(data)
    assert store.read_chunk(digest, 0, 100) == (len(data), data[:100])
    assert store.read_chunk(digest, 10_000, 500) == (len(data), data[10_000:])
    assert store.read_chunk(digest, len(data), 10) == (len(data), b"")
    assert store.read_chunk(digest, len(data) + 1, 10) == (len(data), b"")
    assert store.read_chunk(bytes(32), 0, 10) is None
    assert store.read_chunk(b"short", 0, 10) is None
