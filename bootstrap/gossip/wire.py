"""What nodes say to each other: gossip topic names, message encodings, and request protocol ids.

Every gossip payload is canonical MessagePack (``ledger.encoding.pack``), decoded with size limits into typed
objects before anything else looks at it::

    dacn/tx/1           the signed tx's own canonical bytes
    dacn/txs/1          [signed tx bytes, ...]: 1..MAX_TX_BATCH txs, at most MAX_TX_BATCH_BYTES in all
    dacn/consensus/1    [1, proposal, block, seq]   or   [2, vote, seq]
    dacn/jobdata/1      [1, spec bytes, dataset digest, provider peer id bytes, dataset size]

A tx batch carries the txs one node admitted from one ``POST /txs`` (in admission order, so a sender's nonces
ascend), split into as many messages as the bounds need; each item is a tx's canonical signed encoding, exactly
what ``dacn/tx/1`` carries alone. One message and one forward per batch instead of per tx is what makes the
batch topic worth having: per-tx gossip cost a seen-cache entry, a validation call and a frame per peer for
every tx. A node's own txs and ``POST /tx`` still use ``dacn/tx/1``, and every node reads both topics.

``seq`` is 0 for a first broadcast and grows on each rebroadcast: gossip drops a payload it has already seen,
so a rebroadcast needs different bytes to get past the seen-caches of peers that lost the first copy.

Request protocols: ``/dacn/sync/1`` carries ``ledger.sync`` GetBlocks/Blocks bytes; ``/dacn/status/1`` answers
``[height, head hash, state root]``; blobs travel over the Host's own blob protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bootstrap.errors import WireError
from ledger.block import MAX_BLOCK_BYTES, Block, Proposal, RoundState, Vote
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError, LedgerError
from ledger.tx import MAX_TX_BYTES

TOPIC_TX = "dacn/tx/1"
TOPIC_TXS = "dacn/txs/1"
TOPIC_CONSENSUS = "dacn/consensus/1"
TOPIC_JOBDATA = "dacn/jobdata/1"
PROTO_SYNC = "/dacn/sync/1"
PROTO_STATUS = "/dacn/status/1"

_PROPOSAL, _VOTE, _ROUND_STATE = 1, 2, 3
_ANNOUNCE = 1
MAX_CONSENSUS_BYTES = MAX_BLOCK_BYTES + 4096
MAX_SPEC_BYTES = 16 * 1024
MAX_ANNOUNCE_BYTES = MAX_SPEC_BYTES + 1024
# Bounds of one dacn/txs/1 message: a quarter of p2pnet's default 4 MiB frame, so a batch always fits a frame.
MAX_TX_BATCH = 1024
MAX_TX_BATCH_BYTES = 1024 * 1024


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
class RoundStateMsg:
    """A validator's signed round state (where it is, which votes it holds), so peers send what it lacks."""

    state: RoundState
    seq: int = 0


ConsensusMsg = ProposalMsg | VoteMsg | RoundStateMsg


@dataclass(frozen=True)
class JobDataAnnouncement:
    """"I hold this job's dataset": the spec bytes themselves (small) and who to fetch the dataset from."""

    spec: bytes
    dataset_digest: bytes
    provider: bytes  # the provider's PeerId bytes
    dataset_size: int


def encode_consensus(msg: ConsensusMsg) -> bytes:
    if isinstance(msg, ProposalMsg):
        return pack([_PROPOSAL, msg.proposal.to_wire(), msg.block.to_wire(), msg.seq])
    if isinstance(msg, RoundStateMsg):
        return pack([_ROUND_STATE, msg.state.to_wire(), msg.seq])
    return pack([_VOTE, msg.vote.to_wire(), msg.seq])


def decode_consensus(data: bytes) -> ConsensusMsg:
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
        if obj[0] == _ROUND_STATE:
            if len(obj) != 3 or type(obj[2]) is not int:
                raise WireError("consensus.round_state", "expected [3, round_state, seq]")
            return RoundStateMsg(RoundState.from_wire(obj[1]), obj[2])
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


def encode_tx_batch(raws: Sequence[bytes]) -> bytes:
    """One ``dacn/txs/1`` message; raises :class:`WireError` if ``raws`` is empty or over a bound (use
    :func:`split_tx_batches` for any number of txs)."""
    if not 0 < len(raws) <= MAX_TX_BATCH:
        raise WireError("txs", f"a batch holds 1..{MAX_TX_BATCH} txs, got {len(raws)}")
    data = pack(list(raws))
    if len(data) > MAX_TX_BATCH_BYTES:
        raise WireError("txs", f"{len(data)} bytes exceeds the batch limit of {MAX_TX_BATCH_BYTES}")
    return data


def _bin_header(n: int) -> int:
    """Bytes msgpack spends in front of a bin of ``n`` bytes."""
    return 2 if n < 1 << 8 else 3 if n < 1 << 16 else 5


def split_tx_batches(raws: Iterable[bytes]) -> list[bytes]:
    """``dacn/txs/1`` messages carrying every tx of ``raws``, in order, each within the count and byte bounds."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 5  # the largest array header
    for raw in raws:
        if len(raw) > MAX_TX_BYTES:
            raise WireError("txs", f"a tx of {len(raw)} bytes exceeds {MAX_TX_BYTES}")
        n = len(raw) + _bin_header(len(raw))
        if batch and (len(batch) == MAX_TX_BATCH or size + n > MAX_TX_BATCH_BYTES):
            out.append(encode_tx_batch(batch))
            batch, size = [], 5
        batch.append(raw)
        size += n
    if batch:
        out.append(encode_tx_batch(batch))
    return out


def decode_tx_batch(data: bytes) -> list[bytes]:
    """The signed-tx bytes of an untrusted ``dacn/txs/1`` message (structure and bounds only: each tx is decoded
    and checked by the mempool); raises :class:`WireError`."""
    try:
        obj = unpack(data, max_size=MAX_TX_BATCH_BYTES, max_container_len=MAX_TX_BYTES, field="txs")
    except DecodeError as exc:
        raise WireError("txs", str(exc)) from None
    if not isinstance(obj, list) or not 0 < len(obj) <= MAX_TX_BATCH:
        raise WireError("txs", f"expected a list of 1..{MAX_TX_BATCH} signed txs")
    for i, raw in enumerate(obj):
        if type(raw) is not bytes:
            raise WireError(f"txs[{i}]", f"expected bytes, got {type(raw).__name__}")
    return obj


@dataclass(frozen=True)
class Status:
    """A peer's answer on ``/dacn/status/1``: its head, and the lowest block it still serves (``first_height``:
    above 1 when it pruned old blocks or joined by state sync), so a node that is behind asks a peer that has
    the blocks it lacks."""

    height: int
    head_hash: bytes
    state_root: bytes
    first_height: int = 1

    def to_wire(self) -> list:
        return [self.height, self.head_hash, self.state_root, self.first_height]

    @classmethod
    def from_wire(cls, obj: object) -> Status:
        if (
            not isinstance(obj, list)
            or len(obj) not in (3, 4)  # three: a node from before first_height (an empty answer then says it)
            or type(obj[0]) is not int
            or obj[0] < 0
            or not all(type(x) is bytes and len(x) == 32 for x in obj[1:3])
            or (len(obj) == 4 and (type(obj[3]) is not int or obj[3] < 1))
        ):
            raise WireError("status", "expected [height, head hash (32 bytes), state root (32 bytes), "
                                      "first height (at least 1)]")
        return cls(obj[0], obj[1], obj[2], obj[3] if len(obj) == 4 else 1)
