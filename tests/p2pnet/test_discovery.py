"""The peer table: merging addresses, exponential dial backoff, persistence and malformed files."""

import json
import random

from p2pnet import Identity
from p2pnet.discovery import MAX_ADDRS_PER_PEER, MAX_NEW, MAX_PER_SOURCE, PeerTable


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


def test_one_source_vouches_for_at_most_its_share_and_new_entries_are_bounded() -> None:
    """Issue 17, case 6: one peer-exchange message once carried any number of records and filled the table."""
    table = _table()
    liar = Identity.generate().peer_id
    fakes = [Identity.generate().peer_id for _ in range(MAX_PER_SOURCE + 50)]
    taken = [table.add(p, ["/ip4/10.9.0.1/tcp/1"], source=liar) for p in fakes]
    assert sum(r is not None for r in taken) == MAX_PER_SOURCE and table.source_full(liar)
    assert len(table.records) == MAX_PER_SOURCE and table.refused == 50
    # many sources together still fill only the new entries, oldest out first, and never evict a tried peer
    friend = Identity.generate().peer_id
    table.add(friend, ["/ip4/10.0.0.7/tcp/4001"])
    table.dial_succeeded(friend)
    for _s in range(MAX_NEW // MAX_PER_SOURCE + 3):
        source = Identity.generate().peer_id
        for _i in range(MAX_PER_SOURCE):
            table.add(Identity.generate().peer_id, ["/ip4/10.9.0.2/tcp/1"], source=source)
    assert table.new_entries == MAX_NEW and len(table.records) == MAX_NEW + 1
    assert friend in table.records and table.records[friend].tried
    assert fakes[0] not in table.records  # the oldest new entries went first
    # evicted entries give their source its share back
    assert not table.source_full(liar)


def test_hearsay_does_not_replace_a_tried_peers_addresses() -> None:
    table = _table()
    validator, liar = Identity.generate().peer_id, Identity.generate().peer_id
    table.add(validator, ["/ip4/10.0.0.1/tcp/4001"])
    table.dial_succeeded(validator)
    assert table.add(validator, [f"/ip4/10.6.6.{i}/tcp/1" for i in range(8)], source=liar) is None
    assert table.records[validator].addrs == ["/ip4/10.0.0.1/tcp/4001"]


def test_an_entry_becomes_tried_only_by_a_successful_dial_and_that_survives_a_restart(tmp_path) -> None:
    table = _table()
    heard, dialed = Identity.generate().peer_id, Identity.generate().peer_id
    source = Identity.generate().peer_id
    table.add(heard, ["/ip4/10.0.0.2/tcp/1"], source=source)
    table.add(dialed, ["/ip4/10.0.0.3/tcp/1"], source=source)
    table.dial_failed(heard, now=0.0)
    assert not table.records[heard].tried
    table.dial_succeeded(dialed)
    assert table.records[dialed].tried and table.new_entries == 1
    table.save(tmp_path / "peers.json")
    again = _table()
    assert again.load(tmp_path / "peers.json") == 2
    assert again.records[dialed].tried and not again.records[heard].tried
