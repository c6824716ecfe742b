"""The job-data topic (``dacn/jobdata/1``): announcements that a peer holds a job's spec and dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bootstrap.errors import NodeError, WireError
from bootstrap.gossip.wire import JobDataAnnouncement, decode_announcement
from compute.errors import ComputeError
from compute.spec import JobSpec
from p2pnet import P2PError, PeerId, Received, ValidationResult
from p2pnet.errors import InvalidPeerId

log = logging.getLogger("bootstrap.node")


class JobDataTopic:
    """Validator and delivery for announcements. ``welcome(announcement, relayer)`` says whether this node takes
    it as news (a known spec, or a provider or relaying peer over its share, is IGNOREd: not forwarded, and no
    credit to the sender's score); ``note(announcement, relayer)`` records a delivered one (the jobs room caches
    the spec and remembers the provider)."""

    def __init__(self, welcome: Callable[[JobDataAnnouncement, bytes | None], bool],
                 note: Callable[[JobDataAnnouncement, bytes | None], None]) -> None:
        self.welcome = welcome
        self.note = note

    def validate(self, peer: PeerId, data: bytes) -> ValidationResult:
        """REJECT an announcement whose spec does not decode, whose provider is not a peer id or whose dataset
        digest is not the spec's; IGNORE one that is no news; ACCEPT the rest."""
        try:
            a = decode_announcement(data)
            spec = JobSpec.decode(a.spec)
            PeerId.from_bytes(a.provider)
        except (WireError, ComputeError, InvalidPeerId, P2PError):
            return ValidationResult.REJECT
        if spec.dataset_digest != a.dataset_digest:
            return ValidationResult.REJECT
        if not self.welcome(a, peer.to_bytes()):
            return ValidationResult.IGNORE
        return ValidationResult.ACCEPT

    def deliver(self, msg: Received) -> None:
        try:
            self.note(decode_announcement(msg.data), msg.source.to_bytes())
        except (WireError, P2PError, NodeError) as exc:
            log.warning("bad job data announcement from %s: %s", msg.source.short(), exc)
