"""The peer table (known peers, their addresses, dial backoff), saved to disk and reused on restart."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from p2pnet.errors import InvalidMultiaddr, InvalidPeerId
from p2pnet.identity import PeerId
from p2pnet.multiaddr import Multiaddr

log = logging.getLogger("p2pnet.discovery")

MAX_ADDRS_PER_PEER = 8
MAX_TABLE = 5000


@dataclass
class PeerRecord:
    """What we know about one peer: where it listens, when we saw it, and when we may dial it again."""

    addrs: list[str] = field(default_factory=list)
    last_seen: float = 0.0  # wall clock, for persistence
    failures: int = 0
    next_dial: float = 0.0  # trio clock


class PeerTable:
    """Known peers keyed by PeerId, with exponential dial backoff; ``save``/``load`` keep it across restarts."""

    def __init__(self, rng: random.Random, backoff_base: float, backoff_max: float) -> None:
        self.records: dict[PeerId, PeerRecord] = {}
        self.rng = rng
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def add(self, peer: PeerId, addrs: list[str]) -> PeerRecord:
        """Record (or merge) addresses for ``peer``; addresses that do not parse are skipped."""
        rec = self.records.get(peer)
        if rec is None:
            if len(self.records) >= MAX_TABLE:
                self._evict()
            rec = self.records[peer] = PeerRecord()
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

    def _evict(self) -> None:
        worst = max(self.records.items(), key=lambda kv: (kv[1].failures, -kv[1].last_seen))[0]
        del self.records[worst]

    def dial_succeeded(self, peer: PeerId) -> None:
        rec = self.records.setdefault(peer, PeerRecord())
        rec.failures = 0
        rec.last_seen = time.time()

    def dial_failed(self, peer: PeerId, now: float) -> float:
        """Push the next dial out exponentially (with jitter); returns the delay."""
        rec = self.records.setdefault(peer, PeerRecord())
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
            str(p): {"addrs": r.addrs, "last_seen": r.last_seen, "failures": r.failures}
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
                rec = self.add(peer, addrs)
                rec.last_seen = float(entry.get("last_seen", 0.0))
                rec.failures = min(int(entry.get("failures", 0)), 30)
                n += 1
            except (InvalidPeerId, KeyError, TypeError, ValueError) as exc:
                log.warning("peer table %s: skipping entry %r: %s", p, text[:60], exc)
        return n
