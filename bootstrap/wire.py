"""What nodes say to each other: gossip topic names, message encodings, and request protocol ids.

Every gossip payload is canonical MessagePack (``ledger.encoding.pack``), decoded with size limits into typed
objects before anything else looks at it::

    dacn/tx/1           the signed tx's own canonical bytes
    dacn/consensus/1    [1, proposal, block, seq]   or   [2, vote, seq]
    dacn/jobdata/1      [1, spec bytes, dataset digest, provider peer id bytes, dataset size]

``seq`` is 0 for a first broadcast and grows on each rebroadcast: gossip drops a payload it has already seen,
so a rebroadcast needs different bytes to get past the seen-caches of peers that lost the first copy.

Request protocols: ``/dacn/sync/1`` carries ``ledger.sync`` GetBlocks/Blocks bytes; ``/dacn/status/1`` answers
``[height, head hash, state root]``; blobs travel over the Host's own blob protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from bootstrap.errors import WireError
from ledger.block import MAX_BLOCK_BYTES, Block, Proposal, Vote
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError, LedgerError

TOPIC_TX = "dacn/tx/1"
TOPIC_CONSENSUS = "dacn/consensus/1"
TOPIC_JOBDATA = "dacn/jobdata/1"
PROTO_SYNC = "/dacn/sync/1"
PROTO_STATUS = "/dacn/status/1"

_PROPOSAL, _VOTE = 1, 2
_ANNOUNCE = 1
MAX_CONSENSUS_BYTES = MAX_BLOCK_BYTES + 4096
MAX_SPEC_BYTES = 16 * 1024
MAX_ANNOUNCE_BYTES = MAX_SPEC_BYTES + 1024


@dataclass(frozen=True)
class ProposalMsg:
    """A signed proposal together with the block it names."""

    proposal: Proposal
    block: Block
    seq: int = 0


@dataclass(frozen=True)
class VoteMsg:
    vote: Vote
    seq: int = 0


@dataclass(frozen=True)
class JobDataAnnouncement:
    """"I hold this job's dataset": the spec bytes themselves (small) and who to fetch the dataset from."""

    spec: bytes
    dataset_digest: bytes
    provider: bytes  # the provider's PeerId bytes
    dataset_size: int


def encode_consensus(msg: ProposalMsg | VoteMsg) -> bytes:
    if isinstance(msg, ProposalMsg):
        return pack([_PROPOSAL, msg.proposal.to_wire(), msg.block.to_wire(), msg.seq])
    return pack([_VOTE, msg.vote.to_wire(), msg.seq])


def decode_consensus(data: bytes) -> ProposalMsg | VoteMsg:
    """Decode an untrusted consensus message (structure only; signatures are checked by the caller)."""
    try:
        obj = unpack(data, max_size=MAX_CONSENSUS_BYTES, field="consensus")
        if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
            raise WireError("consensus", "expected [kind, ...]")
        if obj[0] == _PROPOSAL:
            if len(obj) != 4 or type(obj[3]) is not int:
                raise WireError("consensus.proposal", "expected [1, proposal, block, seq]")
            return ProposalMsg(Proposal.from_wire(obj[1]), Block.from_wire(obj[2]), obj[3])
        if obj[0] == _VOTE:
            if len(obj) != 3 or type(obj[2]) is not int:
                raise WireError("consensus.vote", "expected [2, vote, seq]")
            return VoteMsg(Vote.from_wire(obj[1]), obj[2])
        raise WireError("consensus.kind", f"unknown kind {obj[0]}")
    except (DecodeError, LedgerError) as exc:
        raise WireError("consensus", str(exc)) from None


def encode_announcement(a: JobDataAnnouncement) -> bytes:
    return pack([_ANNOUNCE, a.spec, a.dataset_digest, a.provider, a.dataset_size])


def decode_announcement(data: bytes) -> JobDataAnnouncement:
    try:
        obj = unpack(data, max_size=MAX_ANNOUNCE_BYTES, field="jobdata")
    except DecodeError as exc:
        raise WireError("jobdata", str(exc)) from None
    if not isinstance(obj, list) or len(obj) != 5 or obj[0] != _ANNOUNCE:
        raise WireError("jobdata", "expected [1, spec, dataset_digest, provider, size]")
    _, spec, digest, provider, size = obj
    if type(spec) is not bytes or not 0 < len(spec) <= MAX_SPEC_BYTES:
        raise WireError("jobdata.spec", f"expected 1..{MAX_SPEC_BYTES} bytes")
    if type(digest) is not bytes or len(digest) != 32:
        raise WireError("jobdata.dataset_digest", "expected 32 bytes")
    if type(provider) is not bytes or not 0 < len(provider) <= 64:
        raise WireError("jobdata.provider", "expected peer id bytes")
    if type(size) is not int or size < 0:
        raise WireError("jobdata.dataset_size", "expected a non-negative integer")
    return JobDataAnnouncement(spec, digest, provider, size)


@dataclass(frozen=True)
class Status:
    """A peer's answer on ``/dacn/status/1``."""

    height: int
    head_hash: bytes
    state_root: bytes

    def to_wire(self) -> list:
        return [self.height, self.head_hash, self.state_root]

    @classmethod
    def from_wire(cls, obj: object) -> Status:
        if (
            not isinstance(obj, list)
            or len(obj) != 3
            or type(obj[0]) is not int
            or obj[0] < 0
            or not all(type(x) is bytes and len(x) == 32 for x in obj[1:])
        ):
            raise WireError("status", "expected [height, head hash (32 bytes), state root (32 bytes)]")
        return cls(obj[0], obj[1], obj[2])
