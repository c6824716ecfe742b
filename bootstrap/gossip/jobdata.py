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
    """Validator and delivery for announcements; ``note`` records a delivered one (the jobs room keeps the spec
    and remembers the provider)."""

    def __init__(self, note: Callable[[JobDataAnnouncement], None]) -> None:
        self.note = note

    def validate(self, peer: PeerId, data: bytes) -> ValidationResult:
        """ACCEPT an announcement whose spec decodes, whose provider is a peer id and whose dataset digest is
        the spec's; REJECT anything else."""
        try:
            a = decode_announcement(data)
            spec = JobSpec.decode(a.spec)
            PeerId.from_bytes(a.provider)
        except (WireError, ComputeError, InvalidPeerId, P2PError):
            return ValidationResult.REJECT
        if spec.dataset_digest != a.dataset_digest:
            return ValidationResult.REJECT
        return ValidationResult.ACCEPT

    def deliver(self, msg: Received) -> None:
        try:
            self.note(decode_announcement(msg.data))
        except (WireError, P2PError, NodeError) as exc:
            log.warning("bad job data announcement from %s: %s", msg.source.short(), exc)
