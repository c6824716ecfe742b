"""The peer table: merging addresses, exponential dial backoff, persistence and malformed files."""

import json
import random

from p2pnet import Identity
from p2pnet.discovery import MAX_ADDRS_PER_PEER, PeerTable


def _table() -> PeerTable:
    return PeerTable(random.Random(1), backoff_base=1.0, backoff_max=60.0)


def test_addresses_merge_and_skip_garbage() -> None:
    table = _table()
    peer = Identity.generate().peer_id
    table.add(peer, ["/ip4/10.0.0.1/tcp/1", "not an address", f"/ip4/10.0.0.2/tcp/2/p2p/{peer}"])
    table.add(peer, ["/ip4/10.0.0.1/tcp/1"])
    assert sorted(table.records[peer].addrs) == ["/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2"]
    table.add(peer, [f"/ip4/10.0.1.{i}/tcp/1" for i in range(20)])
    assert len(table.records[peer].addrs) == MAX_ADDRS_PER_PEER


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    table = _table()
    peer = Identity.generate().peer_id
    table.add(peer, ["/ip4/10.0.0.1/tcp/1"])
    assert table.candidates(0.0, set()) == [peer]
    delays = [table.dial_failed(peer, now=0.0) for _ in range(10)]
    assert 1.6 <= delays[0] <= 2.4 and 3.2 <= delays[1] <= 4.8  # base × 2^failures, ±20% jitter
    assert all(d <= 60.0 * 1.2 for d in delays) and delays[-1] >= 48.0
    assert table.candidates(10.0, set()) == []  # not before its next dial time
    assert table.candidates(100.0, set()) == [peer]
    assert table.candidates(100.0, {peer}) == []  # connected peers are not candidates
    table.dial_succeeded(peer)
    assert table.records[peer].failures == 0


def test_save_and_load_round_trip(tmp_path) -> None:
    path = tmp_path / "peers.json"
    table = _table()
    peers = [Identity.generate().peer_id for _ in range(3)]
    for i, p in enumerate(peers):
        table.add(p, [f"/ip4/10.0.0.{i}/tcp/4001"])
    table.save(path)
    loaded = _table()
    assert loaded.load(path) == 3
    assert {p: r.addrs for p, r in loaded.records.items()} == {p: r.addrs for p, r in table.records.items()}


def test_malformed_files_are_skipped_not_fatal(tmp_path) -> None:
    path = tmp_path / "peers.json"
    path.write_text("{not json")
    assert _table().load(path) == 0
    good = Identity.generate().peer_id
    path.write_text(json.dumps({"12D3KooWbad": {"addrs": []}, str(good): {"addrs": ["/ip4/1.2.3.4/tcp/5"]}, "x": 1}))
    table = _table()
    assert table.load(path) == 1
    assert list(table.records) == [good]
    assert _table().load(tmp_path / "missing.json") == 0
