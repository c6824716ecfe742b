"""The consensus write-ahead log: every signature the machine makes, and its lock and valid values, on disk
before the message that carries it leaves the node.

It is the validator's last-sign state too (what Tendermint keeps in its WAL and in privval's state file): on
restart the machine is rebuilt from the current height's entries, resends the very signatures it sent, and can
never sign a second, different vote or proposal for a (height, round, step). The driver appends each
:class:`~ledger.consensus.Persist` entry and calls :meth:`ConsensusWal.sync` before any broadcast, so one fsync
covers every entry of one input.

File format: records of ``length (4 bytes, big-endian) ‖ CRC-32 (4) ‖ msgpack body``. The file holds one height:
the first entry of a new height rewrites it (to a temporary file, fsynced, renamed over, directory fsynced), so
its size does not grow with the chain. The height before is safe to forget by then, because the chain store has
committed it (with ``synchronous=FULL``) before the machine moves on.

What a crash can leave: a torn last record (power loss mid-append). Its message was never sent (the append was
not yet fsynced, and sending waits for that), so it is cut off with a warning. Anything else unreadable -- a bad
record with good ones after it, a body that does not decode -- means the file cannot be trusted to say what was
signed, and :class:`WalCorrupt` is raised: the node refuses to sign (it still follows the chain) until an
operator acts. Failing open would let it sign a conflicting vote and be slashed.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from bootstrap.home import fsync_dir, write_private
from ledger import consensus as c
from ledger.block import Proposal, Vote

log = logging.getLogger("bootstrap.driver")

_VALUE, _PROPOSAL, _VOTE, _LOCK = 0, 1, 2, 3
_HEADER = 8
# Larger than any block (a value is a block), far smaller than memory.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class WalCorrupt(Exception):
    """The write-ahead log cannot be read back; the validator must not sign until an operator looks at it."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(
            f"consensus WAL {path} is unreadable at byte {offset} ({reason}); this validator will not sign "
            f"anything until it is fixed. Keep the file for inspection, wait until the chain is past the height "
            f"this node last voted at, then move the file away and restart the node."
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class ConsensusWal:
    """One validator's write-ahead log. ``encode_value``/``decode_value`` turn the machine's values (blocks)
    into bytes and back; ``path=None`` keeps it in memory (tests that do not restart)."""

    def __init__(
        self,
        path: Path | None,
        *,
        encode_value: Callable[[Any], bytes],
        decode_value: Callable[[bytes], Any],
    ) -> None:
        self.path = path
        self._encode_value = encode_value
        self._decode_value = decode_value
        self.height = 0  # the height of the entries held (0: none)
        self._signed: dict[tuple[int, int, int], bytes] = {}
        self._fd: int | None = None
        self._dirty = False
        self.synced_size = 0  # bytes known to be on disk (what power loss cannot take)
        self.size = 0
        self.fsyncs = 0

    # ------------------------------------------------------------------------------------------ reading

    def open(self) -> list[c.WalEntry]:
        """Read the log back (cutting off a torn last record) and keep it open for appending.

        Raises :class:`WalCorrupt` when it cannot be trusted."""
        if self.path is None:
            return []
        data = self.path.read_bytes() if self.path.exists() else b""
        entries: list[c.WalEntry] = []
        offset = 0
        while offset < len(data):
            if len(data) - offset < _HEADER:
                break  # a torn header: the tail of an append that never completed
            length = int.from_bytes(data[offset : offset + 4], "big")
            crc = int.from_bytes(data[offset + 4 : offset + 8], "big")
            end = offset + _HEADER + length
            if length > MAX_RECORD_BYTES:
                raise WalCorrupt(self.path, offset, f"a record claims {length} bytes")
            if end > len(data):
                break  # torn body
            body = data[offset + _HEADER : end]
            if zlib.crc32(body) != crc:
                if end == len(data):
                    break  # the last record, torn in place
                raise WalCorrupt(self.path, offset, "checksum mismatch before the last record")
            try:
                entries.append(self._decode(body))
            except Exception as exc:  # any decoding failure of a checksummed record means: not ours to trust
                raise WalCorrupt(self.path, offset, f"record does not decode: {exc!r}") from None
            offset = end
        if offset < len(data):
            log.warning("consensus WAL %s: cutting off a torn last record (%d bytes)", self.path, len(data) - offset)
            with open(self.path, "r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
        heights = {c.wal_height(e) for e in entries}
        if len(heights) > 1:
            raise WalCorrupt(self.path, 0, f"entries of several heights {sorted(heights)}")
        self.height = heights.pop() if heights else 0
        for e in entries:
            self._index(e)
        self.size = self.synced_size = offset
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fsync_dir(self.path.parent)
        return entries

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------------------------------ writing

    def sign_from(self, next_height: int) -> int:
        """The first height a validator whose chain is at ``next_height`` may sign at: any, unless the log is
        ahead of the chain (a store that lost its last block), when it may have signed at the heights between and
        no longer knows what, so only above the log."""
        return self.height + 1 if self.height > next_height else 0

    def signed(self, height: int, round_: int, step: int) -> bytes | None:
        """The signature we logged for (height, round, step); step 0 is the proposal, else the vote type."""
        return self._signed.get((height, round_, step))

    def append(self, entry: c.WalEntry) -> None:
        """Add an entry (durable after the next :meth:`sync`; a new height's first entry is durable at once)."""
        height = c.wal_height(entry)
        if height < self.height:
            raise ValueError(f"WAL entry for height {height} after height {self.height} (a bug in the caller)")
        record = self._record(entry)
        if height > self.height:
            self._rotate(height, record)
        else:
            if self._fd is not None:
                os.write(self._fd, record)
                self._dirty = True
            self.size += len(record)
        self._index(entry)

    def sync(self) -> None:
        """Make every appended entry durable; called before anything is sent."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self.fsyncs += 1
            self._dirty = False
        self.synced_size = self.size

    def _rotate(self, height: int, first: bytes) -> None:
        self.height = height
        self._signed = {}
        if self.path is None:
            self.size = self.synced_size = len(first)
            return
        write_private(self.path, first)
        self.fsyncs += 2
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._dirty = False
        self.size = self.synced_size = len(first)

    def _index(self, entry: c.WalEntry) -> None:
        if isinstance(entry, c.WalVote):
            v = entry.vote
            self._signed[(v.height, v.round, int(v.vote_type))] = v.signature
        elif isinstance(entry, c.WalProposal):
            p = entry.proposal
            self._signed[(p.height, p.round, 0)] = p.signature

    # ------------------------------------------------------------------------------------------ encoding

    def _record(self, entry: c.WalEntry) -> bytes:
        body = msgpack.packb(self._encode(entry), use_bin_type=True)
        return len(body).to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big") + body

    def _encode(self, entry: c.WalEntry) -> list:
        if isinstance(entry, c.WalValue):
            return [_VALUE, entry.height, self._encode_value(entry.value)]
        if isinstance(entry, c.WalProposal):
            return [_PROPOSAL, entry.proposal.to_wire()]
        if isinstance(entry, c.WalVote):
            return [_VOTE, entry.vote.to_wire()]
        return [
            _LOCK, entry.height, entry.locked_round + 1, entry.locked_id, entry.valid_round + 1, entry.valid_id
        ]

    def _decode(self, body: bytes) -> c.WalEntry:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
        kind = obj[0]
        if kind == _VALUE:
            return c.WalValue(int(obj[1]), self._decode_value(obj[2]))
        if kind == _PROPOSAL:
            return c.WalProposal(Proposal.from_wire(obj[1]))
        if kind == _VOTE:
            return c.WalVote(Vote.from_wire(obj[1]))
        if kind == _LOCK:
            return c.WalLock(int(obj[1]), int(obj[2]) - 1, bytes(obj[3]), int(obj[4]) - 1, bytes(obj[5]))
        raise ValueError(f"unknown WAL record kind {kind!r}")


__all__ = ["MAX_RECORD_BYTES", "ConsensusWal", "WalCorrupt"]
