"""Blocks, votes, proposals, commits, round states and equivocation evidence: typed, canonically encoded, validated.

A block's hash is BLAKE2b-256 of its canonical header; the header binds the transactions (a Merkle root of tx ids),
the previous block's commit and the evidence, so the hash covers the whole block. Every signature covers a domain
tag, the chain id and a canonical body. Untrusted bytes are decoded with size limits into typed objects, and
validation failures raise a :class:`BlockError` subclass naming what mismatched.

Why this file is long: the signed kinds (header, vote, proposal, commit, round state, two kinds of evidence)
share one set of canonical-bytes rules, and each kind's encoding, bounded decoding and checks sit together with
them; split apart, one wire format would be spread over several files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

from nacl.signing import SigningKey

from ledger.crypto import blake2b256, verify
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError, LedgerError
from ledger.types import AccountId, Height

VOTE_DOMAIN = b"dacn/vote/v1"
PROPOSAL_DOMAIN = b"dacn/proposal/v1"
HASH_LEN = 32
SIG_LEN = 64
ZERO_HASH = bytes(HASH_LEN)
MAX_BLOCK_TXS = 10_000
MAX_BLOCK_TX_BYTES = 4 * 1024 * 1024
MAX_BLOCK_EVIDENCE = 64
MAX_VALIDATORS = 1024
# A block on the wire: its txs plus headers, commit and evidence, with room to spare.
MAX_BLOCK_BYTES = MAX_BLOCK_TX_BYTES + 1024 * 1024
MAX_VOTE_BYTES = 512
# The latest block time a block may carry: the next block needs time + 1, and that must still encode as uint64,
# so no proposer can make the block after its own unbuildable.
MAX_BLOCK_TIME_MS = 2**63 - 1


class BlockError(LedgerError):
    """Root of block, vote and commit validation errors."""


class WrongChain(BlockError):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"chain id: expected {expected!r}, got {got!r}")
        self.expected, self.got = expected, got


class WrongHeight(BlockError):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"height: expected {expected}, got {got}")
        self.expected, self.got = expected, got


class BadPrevHash(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"previous hash: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadTime(BlockError):
    def __init__(self, previous_ms: int, got_ms: int) -> None:
        super().__init__(f"time {got_ms} ms is not after the previous block's {previous_ms} ms")
        self.previous_ms, self.got_ms = previous_ms, got_ms


class WrongProposer(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"proposer: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadStateRoot(BlockError):
    def __init__(self, expected: bytes, got: bytes, height: int | None = None) -> None:
        at = f" at height {height}" if height is not None else ""
        super().__init__(f"state root{at}: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got, self.height = expected, got, height


class BadTxRoot(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"tx root: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadValidatorsHash(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"validator-set hash: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadLastCommitHash(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"last-commit hash: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadEvidenceHash(BlockError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"evidence hash: expected {expected.hex()}, got {got.hex()}")
        self.expected, self.got = expected, got


class BadCommit(BlockError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"bad commit: {reason}")
        self.reason = reason


class BadEvidence(BlockError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"bad evidence: {reason}")
        self.reason = reason


class BlockTooLarge(BlockError):
    def __init__(self, what: str, limit: int, got: int) -> None:
        super().__init__(f"block {what}: {got} exceeds the limit {limit}")
        self.what, self.limit, self.got = what, limit, got


class BadBlockTx(BlockError):
    """A transaction in the block is undecodable or fails when executed."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"tx #{index}: {reason}")
        self.index, self.reason = index, reason


# ------------------------------------------------------------------------------------------ decode helpers


def _field(obj: object, name: str, kind: type, *, length: int | None = None) -> object:
    if not isinstance(obj, kind) or (isinstance(obj, bool) and kind is int):
        raise DecodeError(name, f"expected {kind.__name__}, got {type(obj).__name__}")
    if length is not None and len(obj) != length:  # type: ignore[arg-type]
        raise DecodeError(name, f"expected {length} bytes, got {len(obj)}")  # type: ignore[arg-type]
    return obj


def _uint(obj: object, name: str) -> int:
    value = _field(obj, name, int)
    if value < 0:  # type: ignore[operator]
        raise DecodeError(name, f"must be non-negative, got {value}")
    return value  # type: ignore[return-value]


def _list(obj: object, name: str, length: int | None = None, max_len: int | None = None) -> list:
    if not isinstance(obj, list):
        raise DecodeError(name, f"expected a list, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise DecodeError(name, f"expected {length} fields, got {len(obj)}")
    if max_len is not None and len(obj) > max_len:
        raise DecodeError(name, f"at most {max_len} entries, got {len(obj)}")
    return obj


def _hash_or_nil(obj: object, name: str) -> bytes | None:
    raw = _field(obj, name, bytes)
    if raw == b"":
        return None
    if len(raw) != HASH_LEN:  # type: ignore[arg-type]
        raise DecodeError(name, f"expected {HASH_LEN} bytes or empty, got {len(raw)}")  # type: ignore[arg-type]
    return raw  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- votes


class VoteType(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def vote_sign_bytes(
    chain_id: str, vote_type: VoteType, height: Height, round_: int, block_hash: bytes | None, validator: bytes
) -> bytes:
    """What a vote signature covers: domain tag, chain id and the canonical body (nil is empty bytes)."""
    return VOTE_DOMAIN + pack([chain_id, int(vote_type), height, round_, block_hash or b"", validator])


@dataclass(frozen=True)
class Vote:
    """A signed prevote or precommit for a block hash, or for nil (``block_hash is None``)."""

    vote_type: VoteType
    height: Height
    round: int
    block_hash: bytes | None
    validator: AccountId
    signature: bytes

    @classmethod
    def sign(
        cls,
        key: SigningKey,
        chain_id: str,
        vote_type: VoteType,
        height: Height,
        round_: int,
        block_hash: bytes | None,
    ) -> Vote:
        validator = bytes(key.verify_key)
        msg = vote_sign_bytes(chain_id, vote_type, height, round_, block_hash, validator)
        return cls(vote_type, height, round_, block_hash, validator, key.sign(msg).signature)

    def verify(self, chain_id: str) -> bool:
        msg = vote_sign_bytes(chain_id, self.vote_type, self.height, self.round, self.block_hash, self.validator)
        return verify(self.validator, msg, self.signature)

    def to_wire(self) -> list:
        return [int(self.vote_type), self.height, self.round, self.block_hash or b"", self.validator, self.signature]

    @classmethod
    def from_wire(cls, obj: object) -> Vote:
        f = _list(obj, "vote", 6)
        vt = _uint(f[0], "vote.type")
        if vt not in (1, 2):
            raise DecodeError("vote.type", f"unknown vote type {vt}")
        return cls(
            VoteType(vt),
            _uint(f[1], "vote.height"),
            _uint(f[2], "vote.round"),
            _hash_or_nil(f[3], "vote.block_hash"),
            _field(f[4], "vote.validator", bytes, length=32),  # type: ignore[arg-type]
            _field(f[5], "vote.signature", bytes, length=SIG_LEN),  # type: ignore[arg-type]
        )

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        return cls.from_wire(unpack(data, max_size=MAX_VOTE_BYTES))


def proposal_sign_bytes(
    chain_id: str, height: Height, round_: int, pol_round: int, block_hash: bytes, proposer: bytes
) -> bytes:
    return PROPOSAL_DOMAIN + pack([chain_id, height, round_, pol_round, block_hash, proposer])


@dataclass(frozen=True)
class Proposal:
    """A proposer's signed claim "at (height, round) I propose block_hash" (pol_round -1 or a prior round)."""

    height: Height
    round: int
    pol_round: int
    block_hash: bytes
    proposer: AccountId
    signature: bytes

    @classmethod
    def sign(
        cls, key: SigningKey, chain_id: str, height: Height, round_: int, pol_round: int, block_hash: bytes
    ) -> Proposal:
        proposer = bytes(key.verify_key)
        msg = proposal_sign_bytes(chain_id, height, round_, pol_round, block_hash, proposer)
        return cls(height, round_, pol_round, block_hash, proposer, key.sign(msg).signature)

    def verify(self, chain_id: str) -> bool:
        msg = proposal_sign_bytes(chain_id, self.height, self.round, self.pol_round, self.block_hash, self.proposer)
        return verify(self.proposer, msg, self.signature)

    def to_wire(self) -> list:
        # pol_round is stored +1 so the wire format holds only non-negative integers.
        return [self.height, self.round, self.pol_round + 1, self.block_hash, self.proposer, self.signature]

    @classmethod
    def from_wire(cls, obj: object) -> Proposal:
        f = _list(obj, "proposal", 6)
        return cls(
            _uint(f[0], "proposal.height"),
            _uint(f[1], "proposal.round"),
            _uint(f[2], "proposal.pol_round") - 1,
            _field(f[3], "proposal.block_hash", bytes, length=HASH_LEN),  # type: ignore[arg-type]
            _field(f[4], "proposal.proposer", bytes, length=32),  # type: ignore[arg-type]
            _field(f[5], "proposal.signature", bytes, length=SIG_LEN),  # type: ignore[arg-type]
        )


# ------------------------------------------------------------------------------------------ commits


@dataclass(frozen=True)
class CommitSig:
    """One validator's precommit signature inside a commit."""

    validator: AccountId
    signature: bytes


@dataclass(frozen=True)
class Commit:
    """Precommit signatures from more than 2/3 of the validators for one block at (height, round)."""

    height: Height
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]

    def to_wire(self) -> list:
        return [self.height, self.round, self.block_hash, [[s.validator, s.signature] for s in self.signatures]]

    @classmethod
    def from_wire(cls, obj: object) -> Commit:
        f = _list(obj, "commit", 4)
        sigs = []
        for i, item in enumerate(_list(f[3], "commit.signatures", max_len=MAX_VALIDATORS)):
            pair = _list(item, f"commit.signatures[{i}]", 2)
            sigs.append(
                CommitSig(
                    _field(pair[0], f"commit.signatures[{i}].validator", bytes, length=32),  # type: ignore[arg-type]
                    _field(pair[1], f"commit.signatures[{i}].signature", bytes, length=SIG_LEN),  # type: ignore[arg-type]
                )
            )
        return cls(
            _uint(f[0], "commit.height"),
            _uint(f[1], "commit.round"),
            _field(f[2], "commit.block_hash", bytes, length=HASH_LEN),  # type: ignore[arg-type]
            tuple(sigs),
        )

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Commit:
        return cls.from_wire(unpack(data, max_size=MAX_VALIDATORS * 120 + 128))


def verify_commit(
    commit: Commit,
    validators: Sequence[AccountId],
    chain_id: str,
    *,
    height: Height | None = None,
    block_hash: bytes | None = None,
) -> None:
    """Check a commit: right height and block, known distinct signers, valid signatures, more than 2/3.

    Raises :class:`BadCommit` naming the first problem.
    """
    if height is not None and commit.height != height:
        raise BadCommit(f"commit is for height {commit.height}, expected {height}")
    if block_hash is not None and commit.block_hash != block_hash:
        raise BadCommit(f"commit is for block {commit.block_hash.hex()}, expected {block_hash.hex()}")
    members = set(validators)
    seen: set[bytes] = set()
    for s in commit.signatures:
        if s.validator not in members:
            raise BadCommit(f"signer {s.validator.hex()} is not a validator")
        if s.validator in seen:
            raise BadCommit(f"signer {s.validator.hex()} appears twice")
        seen.add(s.validator)
    if 3 * len(seen) <= 2 * len(members):
        raise BadCommit(f"{len(seen)} of {len(members)} signatures is not more than 2/3")
    for s in commit.signatures:
        msg = vote_sign_bytes(chain_id, VoteType.PRECOMMIT, commit.height, commit.round, commit.block_hash, s.validator)
        if not verify(s.validator, msg, s.signature):
            raise BadCommit(f"signature of {s.validator.hex()} does not verify")


# ----------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Evidence:
    """Two conflicting votes by one validator for the same height, round and step."""

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def from_votes(cls, a: Vote, b: Vote) -> Evidence:
        # A canonical order, so the same pair seen in either order is the same evidence.
        if (a.block_hash or b"") > (b.block_hash or b""):
            a, b = b, a
        return cls(a, b)

    @property
    def offender(self) -> AccountId:
        return self.vote_a.validator

    @property
    def height(self) -> Height:
        return self.vote_a.height

    @property
    def key(self) -> tuple[bytes, int, int, int]:
        """Identifies the offence: one validator, one height/round/step, punished once."""
        return (self.offender, self.vote_a.height, self.vote_a.round, int(self.vote_a.vote_type))

    def validate(self, chain_id: str, validators: Sequence[AccountId]) -> None:
        """Raise :class:`BadEvidence` unless both votes are validly signed, conflicting and by one validator."""
        a, b = self.vote_a, self.vote_b
        if a.validator != b.validator:
            raise BadEvidence("the two votes are by different validators")
        if a.validator not in set(validators):
            raise BadEvidence(f"{a.validator.hex()} is not a validator")
        if (a.vote_type, a.height, a.round) != (b.vote_type, b.height, b.round):
            raise BadEvidence("the votes are for different heights, rounds or steps")
        if (a.block_hash or b"") >= (b.block_hash or b""):
            raise BadEvidence("the votes do not conflict or are not in canonical order")
        if not a.verify(chain_id) or not b.verify(chain_id):
            raise BadEvidence("a vote signature does not verify")

    def to_wire(self) -> list:
        return [self.vote_a.to_wire(), self.vote_b.to_wire()]

    @classmethod
    def from_wire(cls, obj: object) -> Evidence:
        f = _list(obj, "evidence", 2)
        return cls(Vote.from_wire(f[0]), Vote.from_wire(f[1]))


# The step number a proposal offence is keyed by (votes use their VoteType, 1 and 2).
PROPOSAL_STEP = 0


@dataclass(frozen=True)
class ProposalEvidence:
    """Two different proposals signed by one proposer for the same height and round.

    A proposer restarted mid-round that forgot what it proposed, or one that shows different blocks to different
    validators, signs such a pair; either way it may split honest prevotes, so it is punished like a double vote.
    """

    proposal_a: Proposal
    proposal_b: Proposal

    @classmethod
    def from_proposals(cls, a: Proposal, b: Proposal) -> ProposalEvidence:
        if (a.block_hash, a.pol_round) > (b.block_hash, b.pol_round):
            a, b = b, a
        return cls(a, b)

    @property
    def offender(self) -> AccountId:
        return self.proposal_a.proposer

    @property
    def height(self) -> Height:
        return self.proposal_a.height

    @property
    def key(self) -> tuple[bytes, int, int, int]:
        return (self.offender, self.proposal_a.height, self.proposal_a.round, PROPOSAL_STEP)

    def validate(self, chain_id: str, validators: Sequence[AccountId]) -> None:
        """Raise :class:`BadEvidence` unless both proposals are validly signed, conflicting, by the round's
        proposer."""
        a, b = self.proposal_a, self.proposal_b
        if a.proposer != b.proposer:
            raise BadEvidence("the two proposals are by different proposers")
        if a.proposer not in set(validators):
            raise BadEvidence(f"{a.proposer.hex()} is not a validator")
        if (a.height, a.round) != (b.height, b.round):
            raise BadEvidence("the proposals are for different heights or rounds")
        if proposer_for(validators, a.height, a.round) != a.proposer:
            raise BadEvidence("the signer is not the proposer of that round")
        if (a.block_hash, a.pol_round) >= (b.block_hash, b.pol_round):
            raise BadEvidence("the proposals do not conflict or are not in canonical order")
        if not a.verify(chain_id) or not b.verify(chain_id):
            raise BadEvidence("a proposal signature does not verify")

    def to_wire(self) -> list:
        # Tagged with a leading 0 so it can never be read as a vote pair (a 2-list).
        return [PROPOSAL_STEP, self.proposal_a.to_wire(), self.proposal_b.to_wire()]

    @classmethod
    def from_wire(cls, obj: object) -> ProposalEvidence:
        f = _list(obj, "proposal evidence", 3)
        if _uint(f[0], "evidence.kind") != PROPOSAL_STEP:
            raise DecodeError("evidence.kind", "unknown evidence kind")
        return cls(Proposal.from_wire(f[1]), Proposal.from_wire(f[2]))


AnyEvidence = Evidence | ProposalEvidence


def evidence_from_wire(obj: object) -> AnyEvidence:
    """Decode either kind of evidence: a vote pair is a 2-list, a proposal pair a tagged 3-list."""
    if isinstance(obj, list) and len(obj) == 3:
        return ProposalEvidence.from_wire(obj)
    return Evidence.from_wire(obj)


# ---------------------------------------------------------------------------------------- round state

ROUND_STATE_DOMAIN = b"dacn/round-state/v1"
# A round state describes at most this many rounds (the latest ones), so its size does not grow with the rounds
# a height has taken.
ROUND_STATE_ROUNDS = 16


@dataclass(frozen=True)
class RoundVotes:
    """Which validators' votes one validator holds for one round: bit i is ``validators[i]``."""

    round: int
    has_proposal: bool
    prevotes: int
    precommits: int


def round_state_sign_bytes(
    chain_id: str, validator: bytes, height: Height, round_: int, step: int, rounds: Sequence[RoundVotes]
) -> bytes:
    return ROUND_STATE_DOMAIN + pack([chain_id, validator, height, round_, step, _round_votes_wire(rounds)])


def _bits_to_wire(bits: int) -> bytes:
    # A bitmap as minimal little-endian bytes: msgpack ints stop at 64 bits, validator sets do not.
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def _bits_from_wire(obj: object, name: str) -> int:
    raw = _field(obj, name, bytes)
    if len(raw) > (MAX_VALIDATORS + 7) // 8:  # type: ignore[arg-type]
        raise DecodeError(name, "more bits than validators")
    if raw and raw[-1] == 0:  # type: ignore[index]
        raise DecodeError(name, "not minimal (a trailing zero byte)")
    return int.from_bytes(raw, "little")  # type: ignore[arg-type]


def _round_votes_wire(rounds: Sequence[RoundVotes]) -> list:
    return [[r.round, int(r.has_proposal), _bits_to_wire(r.prevotes), _bits_to_wire(r.precommits)] for r in rounds]


@dataclass(frozen=True)
class RoundState:
    """A validator's signed "where I am and what I hold" (height, round, step, and per recent round which votes
    and whether the proposal), so that peers can send it what it lacks, for earlier rounds too (CometBFT's
    NewRoundStep plus HasVote/VoteSetBits, folded into one message). Signed so that a stranger cannot make
    validators relay votes on its behalf."""

    validator: AccountId
    height: Height
    round: int
    step: int
    rounds: tuple[RoundVotes, ...]
    signature: bytes

    @classmethod
    def sign(
        cls, key: SigningKey, chain_id: str, height: Height, round_: int, step: int, rounds: Sequence[RoundVotes]
    ) -> RoundState:
        validator = bytes(key.verify_key)
        msg = round_state_sign_bytes(chain_id, validator, height, round_, step, rounds)
        return cls(validator, height, round_, step, tuple(rounds), key.sign(msg).signature)

    def verify(self, chain_id: str) -> bool:
        msg = round_state_sign_bytes(chain_id, self.validator, self.height, self.round, self.step, self.rounds)
        return verify(self.validator, msg, self.signature)

    def to_wire(self) -> list:
        return [self.validator, self.height, self.round, self.step, _round_votes_wire(self.rounds), self.signature]

    @classmethod
    def from_wire(cls, obj: object) -> RoundState:
        f = _list(obj, "round_state", 6)
        rounds = []
        for i, item in enumerate(_list(f[4], "round_state.rounds", max_len=ROUND_STATE_ROUNDS)):
            g = _list(item, f"round_state.rounds[{i}]", 4)
            bits = [_bits_from_wire(g[k], f"round_state.rounds[{i}]") for k in (2, 3)]
            has = _uint(g[1], f"round_state.rounds[{i}].has_proposal")
            if has > 1:
                raise DecodeError(f"round_state.rounds[{i}].has_proposal", "expected 0 or 1")
            rounds.append(RoundVotes(_uint(g[0], f"round_state.rounds[{i}].round"), bool(has), bits[0], bits[1]))
        step = _uint(f[3], "round_state.step")
        if step > 3:
            raise DecodeError("round_state.step", f"unknown step {step}")
        return cls(
            _field(f[0], "round_state.validator", bytes, length=32),  # type: ignore[arg-type]
            _uint(f[1], "round_state.height"),
            _uint(f[2], "round_state.round"),
            step,
            tuple(rounds),
            _field(f[5], "round_state.signature", bytes, length=SIG_LEN),  # type: ignore[arg-type]
        )


# -------------------------------------------------------------------------------------------- blocks


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962-style BLAKE2b Merkle root (leaf and node prefixes differ, so a node cannot pose as a leaf)."""
    if not leaves:
        return blake2b256(b"")
    level = [blake2b256(b"\x00" + leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [blake2b256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tx_root(txs: Sequence[bytes]) -> bytes:
    """The Merkle root of the tx ids (BLAKE2b-256 of each signed encoding)."""
    return merkle_root([blake2b256(tx) for tx in txs])


def validators_hash(validators: Sequence[AccountId]) -> bytes:
    return blake2b256(pack(list(validators)))


def last_commit_hash(commit: Commit | None) -> bytes:
    return ZERO_HASH if commit is None else blake2b256(commit.encode())


def evidence_hash(evidence: Sequence[AnyEvidence]) -> bytes:
    return blake2b256(pack([e.to_wire() for e in evidence]))


@dataclass(frozen=True)
class BlockHeader:
    """What a block hash covers. ``state_root`` is the state after the previous block."""

    chain_id: str
    height: Height
    round: int
    prev_hash: bytes
    time_ms: int
    proposer: AccountId
    tx_root: bytes
    state_root: bytes
    validators_hash: bytes
    last_commit_hash: bytes
    evidence_hash: bytes

    def to_wire(self) -> list:
        return [
            self.chain_id,
            self.height,
            self.round,
            self.prev_hash,
            self.time_ms,
            self.proposer,
            self.tx_root,
            self.state_root,
            self.validators_hash,
            self.last_commit_hash,
            self.evidence_hash,
        ]

    @classmethod
    def from_wire(cls, obj: object) -> BlockHeader:
        f = _list(obj, "header", 11)
        chain_id = _field(f[0], "header.chain_id", str)
        hashes = {}
        for i, name in (
            (3, "prev_hash"),
            (6, "tx_root"),
            (7, "state_root"),
            (8, "validators_hash"),
            (9, "last_commit_hash"),
            (10, "evidence_hash"),
        ):
            hashes[name] = _field(f[i], f"header.{name}", bytes, length=HASH_LEN)
        return cls(
            chain_id,  # type: ignore[arg-type]
            _uint(f[1], "header.height"),
            _uint(f[2], "header.round"),
            time_ms=_uint(f[4], "header.time_ms"),
            proposer=_field(f[5], "header.proposer", bytes, length=32),  # type: ignore[arg-type]
            **hashes,  # type: ignore[arg-type]
        )

    def hash(self) -> bytes:
        return blake2b256(pack(self.to_wire()))


@dataclass(frozen=True)
class Block:
    """A header, the encoded signed transactions, the previous block's commit and equivocation evidence."""

    header: BlockHeader
    txs: tuple[bytes, ...]
    last_commit: Commit | None
    evidence: tuple[AnyEvidence, ...] = ()

    @property
    def height(self) -> Height:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    @cached_property
    def tx_ids(self) -> tuple[bytes, ...]:
        """The ids of :attr:`txs` (BLAKE2b-256 of each), in order; hashed once per block object, not once for
        the tx root, once per execution and again for the commit's bookkeeping."""
        return tuple(blake2b256(tx) for tx in self.txs)

    def to_wire(self) -> list:
        return [
            self.header.to_wire(),
            list(self.txs),
            None if self.last_commit is None else self.last_commit.to_wire(),
            [e.to_wire() for e in self.evidence],
        ]

    @classmethod
    def from_wire(cls, obj: object) -> Block:
        f = _list(obj, "block", 4)
        txs = _list(f[1], "block.txs", max_len=MAX_BLOCK_TXS)
        for i, tx in enumerate(txs):
            _field(tx, f"block.txs[{i}]", bytes)
        evidence = _list(f[3], "block.evidence", max_len=MAX_BLOCK_EVIDENCE)
        return cls(
            BlockHeader.from_wire(f[0]),
            tuple(txs),
            None if f[2] is None else Commit.from_wire(f[2]),
            tuple(evidence_from_wire(e) for e in evidence),
        )

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Block:
        return cls.from_wire(unpack(data, max_size=MAX_BLOCK_BYTES))


def block_hash(block: Block) -> bytes:
    return block.hash()


def make_block(
    *,
    chain_id: str,
    height: Height,
    round_: int,
    prev_hash: bytes,
    time_ms: int,
    proposer: AccountId,
    state_root: bytes,
    validators: Sequence[AccountId],
    txs: Sequence[bytes],
    last_commit: Commit | None,
    evidence: Sequence[AnyEvidence] = (),
) -> Block:
    """Assemble a block, computing every derived header field."""
    header = BlockHeader(
        chain_id=chain_id,
        height=height,
        round=round_,
        prev_hash=prev_hash,
        time_ms=time_ms,
        proposer=proposer,
        tx_root=tx_root(txs),
        state_root=state_root,
        validators_hash=validators_hash(validators),
        last_commit_hash=last_commit_hash(last_commit),
        evidence_hash=evidence_hash(evidence),
    )
    return Block(header, tuple(txs), last_commit, tuple(evidence))


def proposer_for(validators: Sequence[AccountId], height: Height, round_: int) -> AccountId:
    """The proposer for (height, round): ``validators[(height + round) % n]`` (the consensus machine and block
    validation both ask this one function)."""
    return validators[(height + round_) % len(validators)]


def validate_block_header(
    block: Block,
    *,
    chain_id: str,
    prev: BlockHeader | None,
    initial_height: Height,
    genesis_time_ms: int,
    state_root: bytes,
    validators: Sequence[AccountId],
) -> None:
    """Stateless-of-txs checks of a block against its predecessor (None for the first block) and the state root.

    Transactions themselves are checked by executing them (``ledger.chain.execute_block``).
    """
    h = block.header
    if h.chain_id != chain_id:
        raise WrongChain(chain_id, h.chain_id)
    expected_height = initial_height if prev is None else prev.height + 1
    if h.height != expected_height:
        raise WrongHeight(expected_height, h.height)
    expected_prev = ZERO_HASH if prev is None else prev.hash()
    if h.prev_hash != expected_prev:
        raise BadPrevHash(expected_prev, h.prev_hash)
    prev_time = genesis_time_ms if prev is None else prev.time_ms
    if h.time_ms <= prev_time or h.time_ms > MAX_BLOCK_TIME_MS:
        raise BadTime(prev_time, h.time_ms)
    expected_proposer = proposer_for(validators, h.height, h.round)
    if h.proposer != expected_proposer:
        raise WrongProposer(expected_proposer, h.proposer)
    vh = validators_hash(validators)
    if h.validators_hash != vh:
        raise BadValidatorsHash(vh, h.validators_hash)
    if h.state_root != state_root:
        raise BadStateRoot(state_root, h.state_root, h.height)
    if len(block.txs) > MAX_BLOCK_TXS:
        raise BlockTooLarge("tx count", MAX_BLOCK_TXS, len(block.txs))
    size = sum(len(t) for t in block.txs)
    if size > MAX_BLOCK_TX_BYTES:
        raise BlockTooLarge("tx bytes", MAX_BLOCK_TX_BYTES, size)
    root = merkle_root(block.tx_ids)
    if h.tx_root != root:
        raise BadTxRoot(root, h.tx_root)
    lch = last_commit_hash(block.last_commit)
    if h.last_commit_hash != lch:
        raise BadLastCommitHash(lch, h.last_commit_hash)
    if prev is None:
        if block.last_commit is not None:
            raise BadCommit("the first block cannot carry a previous commit")
    else:
        if block.last_commit is None:
            raise BadCommit("missing the previous block's commit")
        verify_commit(block.last_commit, validators, chain_id, height=prev.height, block_hash=expected_prev)
    eh = evidence_hash(block.evidence)
    if h.evidence_hash != eh:
        raise BadEvidenceHash(eh, h.evidence_hash)
    if len(block.evidence) > MAX_BLOCK_EVIDENCE:
        raise BlockTooLarge("evidence count", MAX_BLOCK_EVIDENCE, len(block.evidence))
    keys = set()
    for ev in block.evidence:
        ev.validate(chain_id, validators)
        if ev.height >= h.height:
            raise BadEvidence(f"evidence at height {ev.height} is not from before block {h.height}")
        if ev.key in keys:
            raise BadEvidence("the same offence is listed twice")
        keys.add(ev.key)
