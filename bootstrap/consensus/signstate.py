"""The double-sign guard: a validator's last own votes, kept on disk before each broadcast.

A node that restarts at the same height must not sign a vote that conflicts with one it sent before the
restart (that pair would be evidence of equivocation and get it slashed): :class:`SignState` remembers, per
height, the block hash of every (round, step) it signed, written whole and fsynced before the vote leaves.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ledger.block import Vote

log = logging.getLogger("bootstrap.driver")


class SignState:
    """A validator's last own votes (height, round, type → block hash), persisted before each broadcast."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.height = 0
        self.votes: dict[tuple[int, int], str] = {}
        if path is not None and path.exists():
            try:
                doc = json.loads(path.read_text())
                self.height = int(doc["height"])
                self.votes = {(int(r), int(t)): h for r, t, h in doc["votes"]}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable sign state %s: %s", path, exc)

    def allows(self, vote: Vote) -> bool:
        """False if we already signed a different vote for this height/round/step (before a restart)."""
        if vote.height != self.height:
            return vote.height > self.height
        prev = self.votes.get((vote.round, int(vote.vote_type)))
        return prev is None or prev == (vote.block_hash or b"").hex()

    def record(self, vote: Vote) -> None:
        if vote.height != self.height:
            self.height, self.votes = vote.height, {}
        self.votes[(vote.round, int(vote.vote_type))] = (vote.block_hash or b"").hex()
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        doc = {"height": self.height, "votes": [[r, t, h] for (r, t), h in self.votes.items()]}
        with open(tmp, "w") as f:
            f.write(json.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
