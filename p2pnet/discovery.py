"""The peer table (known peers, their addresses, dial backoff), saved to disk and reused on restart.

Entries are *tried* (we have been connected to the peer) or *new* (another peer told us of it through peer
exchange, and we have not connected yet), as in Bitcoin's addrman. What a stranger can do to the table is bounded:
one source may vouch for at most ``MAX_PER_SOURCE`` new entries, new entries are at most ``MAX_NEW`` and are
evicted oldest first in O(1) (never a tried one), a tried peer's addresses are not replaced by what others say of
it, and an entry becomes tried only after a successful dial.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from p2pnet.errors import InvalidMultiaddr, InvalidPeerId
from p2pnet.identity import PeerId
from p2pnet.multiaddr import Multiaddr

log = logging.getLogger("p2pnet.discovery")

MAX_ADDRS_PER_PEER = 8
MAX_TABLE = 5000
MAX_NEW = 1024  # entries learned from others and not yet dialed
MAX_PER_SOURCE = 64  # new entries one peer may have put in the table


@dataclass
class PeerRecord:
    """What we know about one peer: where it listens, when we saw it, and when we may dial it again."""

    addrs: list[str] = field(default_factory=list)
    last_seen: float = 0.0  # wall clock, for persistence
    failures: int = 0
    next_dial: float = 0.0  # trio clock
    tried: bool = False  # we have been connected to it
    source: PeerId | None = None  # who told us of it (new entries learned through peer exchange only)


class PeerTable:
    """Known peers keyed by PeerId, with exponential dial backoff; ``save``/``load`` keep it across restarts."""

    def __init__(self, rng: random.Random, backoff_base: float, backoff_max: float) -> None:
        self.records: dict[PeerId, PeerRecord] = {}
        self.rng = rng
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._new: OrderedDict[PeerId, None] = OrderedDict()  # untried entries, oldest first
        self._by_source: dict[PeerId, int] = {}  # new entries each source put in
        self.refused = 0  # entries from peer exchange not taken (source over its share, or a tried peer's)

    def add(self, peer: PeerId, addrs: list[str], *, source: PeerId | None = None) -> PeerRecord | None:
        """Record (or merge) addresses for ``peer``; addresses that do not parse are skipped. ``source`` is the
        peer that told us (peer exchange), None for what we know first hand (bootstrap, the peer itself, our saved
        table). Returns the record, or None when a source's entry was not taken."""
        rec = self.records.get(peer)
        if source is not None:
            if rec is not None and rec.tried:
                self.refused += 1  # we know how to reach it: hearsay does not replace that
                return None
            if rec is None and self._by_source.get(source, 0) >= MAX_PER_SOURCE:
                self.refused += 1
                return None
        if rec is None:
            self._make_room(new=True)
            rec = self.records[peer] = PeerRecord()
            self._new[peer] = None
            if source is not None:
                rec.source = source
                self._by_source[source] = self._by_source.get(source, 0) + 1
        for a in addrs:
            try:
                ma = Multiaddr.parse(a).without_peer_id()
            except InvalidMultiaddr:
                continue
            text = str(ma)
            if text not in rec.addrs:
                rec.addrs.insert(0, text)
        del rec.addrs[MAX_ADDRS_PER_PEER:]
        return rec

    def _make_room(self, *, new: bool) -> None:
        if (new and len(self._new) >= MAX_NEW) or (len(self.records) >= MAX_TABLE and self._new):
            self._remove(next(iter(self._new)))  # the oldest untried entry
        elif len(self.records) >= MAX_TABLE:
            # Only tried entries left: drop the one that failed most and was seen least recently (tried entries
            # come from our own connections, so this scan is not something a stranger can repeat at will).
            worst = max(self.records.items(), key=lambda kv: (kv[1].failures, -kv[1].last_seen))[0]
            self._remove(worst)

    def _remove(self, peer: PeerId) -> None:
        rec = self.records.pop(peer)
        self._forget_new(peer, rec)

    def _forget_new(self, peer: PeerId, rec: PeerRecord) -> None:
        was_new = peer in self._new
        self._new.pop(peer, None)
        if was_new and rec.source is not None:
            left = self._by_source.get(rec.source, 1) - 1
            if left > 0:
                self._by_source[rec.source] = left
            else:
                self._by_source.pop(rec.source, None)
        rec.source = None

    @property
    def new_entries(self) -> int:
        return len(self._new)

    def source_full(self, source: PeerId) -> bool:
        """Whether ``source`` has put all the new entries it may in the table."""
        return self._by_source.get(source, 0) >= MAX_PER_SOURCE

    def dial_succeeded(self, peer: PeerId) -> None:
        """We connected to ``peer``: its entry is tried from now on."""
        rec = self.records.get(peer)
        if rec is None:
            self._make_room(new=False)
            rec = self.records[peer] = PeerRecord()
        else:
            self._forget_new(peer, rec)
        rec.tried = True
        rec.failures = 0
        rec.last_seen = time.time()

    def dial_failed(self, peer: PeerId, now: float) -> float:
        """Push the next dial out exponentially (with jitter); returns the delay."""
        rec = self.records.get(peer)
        if rec is None:
            rec = self.add(peer, [])
            assert rec is not None
        rec.failures += 1
        delay = min(self.backoff_base * 2 ** min(rec.failures, 30), self.backoff_max)
        delay *= self.rng.uniform(0.8, 1.2)
        rec.next_dial = now + delay
        return delay

    def disconnected(self, peer: PeerId, now: float) -> None:
        """A live connection ended: allow a redial after the base backoff."""
        rec = self.records.get(peer)
        if rec is not None:
            rec.last_seen = time.time()
            rec.next_dial = max(rec.next_dial, now + self.backoff_base)

    def candidates(self, now: float, exclude: set[PeerId]) -> list[PeerId]:
        """Peers we may dial now, fewest failures first (random among equals)."""
        ready = [
            p for p, r in self.records.items() if p not in exclude and r.addrs and r.next_dial <= now
        ]
        self.rng.shuffle(ready)
        ready.sort(key=lambda p: self.records[p].failures)
        return ready

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON, atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {
            str(p): {"addrs": r.addrs, "last_seen": r.last_seen, "failures": r.failures, "tried": r.tried}
            for p, r in self.records.items()
        }
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, target)

    def load(self, path: str | os.PathLike[str]) -> int:
        """Merge a saved table; entries that do not parse are skipped with a warning. Returns how many loaded."""
        p = Path(path)
        if not p.exists():
            return 0
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            log.warning("peer table %s unreadable, starting empty: %s", p, exc)
            return 0
        if not isinstance(data, dict):
            log.warning("peer table %s is not a JSON object, starting empty", p)
            return 0
        n = 0
        for text, entry in list(data.items())[:MAX_TABLE]:
            try:
                peer = PeerId.from_string(text)
                addrs = [a for a in entry["addrs"] if isinstance(a, str)]
                if entry.get("tried") is True:
                    self.dial_succeeded(peer)
                rec = self.add(peer, addrs)
                assert rec is not None
                rec.last_seen = float(entry.get("last_seen", 0.0))
                rec.failures = min(int(entry.get("failures", 0)), 30)
                n += 1
            except (InvalidPeerId, KeyError, TypeError, ValueError) as exc:
                log.warning("peer table %s: skipping entry %r: %s", p, text[:60], exc)
        return n
