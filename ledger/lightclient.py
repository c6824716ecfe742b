"""A light client's check of one state record: is this what the chain says, trusting no node?

A node answers ``GET /proof/<section>/<id>`` with a :class:`StateProof`: the record as of height ``h`` (or that
there is none), its path in the state tree (``ledger.smt``), the state's header, and the header and commit of
block ``h + 1``, whose ``state_root`` is the root of the state after block ``h``. :func:`verify_state_proof`
checks every link with nothing but the bytes, the chain id and the validator set (a genesis file gives both):

1. the commit carries valid precommits of more than 2/3 of the validators for the anchor block's hash;
2. the anchor block is at ``h + 1`` of this chain and names this validator set;
3. its ``state_root`` equals ``BLAKE2b(state header || tree root)``, and the header is at height ``h``;
4. the tree proof takes the record's value hash (or emptiness) at its tree key to that tree root;
5. the record is for the key asked about.

A node that lies about any byte fails one of these: it cannot forge the validators' signatures, and any other
record, root or header gives another hash. The format is in docs/STATE_TREE.md ("Proofs at the edges").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.block import BadCommit, BlockHeader, Commit, validators_hash, verify_commit
from ledger.crypto import blake2b256
from ledger.encoding import pack, unpack
from ledger.errors import DecodeError, LedgerError
from ledger.smt import Proof, verify_proof
from ledger.state import Account, Job, Worker, combine_root, raw_tree_key
from ledger.types import AccountId

STATE_PROOF_VERSION = 1
# A header (params and up to a few hundred validators), a tree proof, a block header and a commit.
MAX_STATE_PROOF_BYTES = 256 * 1024
# The raw key of a record in each section: an account, worker or job id; an allowance's owner then spender.
KEY_BYTES = {"account": 32, "worker": 32, "job": 32, "allowance": 64}


class Rejected(LedgerError):
    """Something checked link by link that does not hold; ``check`` names the first link that failed."""

    what = "data"

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{self.what} rejected ({check}): {reason}")
        self.check, self.reason = check, reason


class ProofRejected(Rejected):
    """A state proof that does not hold (the links are in the module docstring)."""

    what = "proof"


def header_problem(header: BlockHeader, commit: Commit, *, chain_id: str,
                   validators: Sequence[AccountId]) -> tuple[str, str] | None:
    """Why ``commit`` does not make ``header`` a block of ``chain_id`` under ``validators``, as (link, reason):
    ``commit`` (not more than 2/3 of them signed exactly this header) or ``anchor`` (another chain or validator
    set); None when it does."""
    try:
        verify_commit(commit, validators, chain_id, height=header.height, block_hash=header.hash())
    except BadCommit as exc:
        return "commit", exc.reason
    if header.chain_id != chain_id:
        return "anchor", f"block of chain {header.chain_id!r}, not {chain_id!r}"
    if header.validators_hash != validators_hash(validators):
        return "anchor", "the block names another validator set"
    return None


@dataclass(frozen=True)
class StateProof:
    """Everything a light client needs to check one record at one height (see the module docstring)."""

    section: str
    key: bytes
    record: bytes | None  # the record's canonical msgpack (``ledger.state.record_value``), None when absent
    state_header: bytes
    tree_root: bytes
    proof: Proof
    anchor: BlockHeader
    commit: Commit

    def encode(self) -> bytes:
        """``[1, section, key, record or nil, state_header, tree_root, proof, anchor header, commit]``, packed."""
        return pack([STATE_PROOF_VERSION, self.section, self.key, self.record, self.state_header, self.tree_root,
                     self.proof.encode(), self.anchor.to_wire(), self.commit.to_wire()])

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        """The proof in ``data``; raises ``DecodeError`` naming the malformed part."""
        obj = unpack(data, max_size=MAX_STATE_PROOF_BYTES, field="state_proof")
        if type(obj) is not list or len(obj) != 9:
            raise DecodeError("state_proof", "expected a 9-element list")
        version, section, key, record, header, tree_root, proof, anchor, commit = obj
        if version != STATE_PROOF_VERSION:
            raise DecodeError("state_proof.version", f"expected {STATE_PROOF_VERSION}, got {version!r:.40}")
        if section not in KEY_BYTES:
            raise DecodeError("state_proof.section", f"one of {', '.join(KEY_BYTES)}, got {section!r:.40}")
        if type(key) is not bytes or len(key) != KEY_BYTES[section]:
            raise DecodeError("state_proof.key", f"a {section} key is {KEY_BYTES[section]} bytes")
        if record is not None and type(record) is not bytes:
            raise DecodeError("state_proof.record", "expected bytes or nil")
        if type(header) is not bytes:
            raise DecodeError("state_proof.state_header", "expected bytes")
        if type(tree_root) is not bytes or len(tree_root) != 32:
            raise DecodeError("state_proof.tree_root", "expected 32 bytes")
        if type(proof) is not bytes:
            raise DecodeError("state_proof.proof", "expected bytes")
        return cls(section, key, record, header, tree_root, Proof.decode(proof), BlockHeader.from_wire(anchor),
                   Commit.from_wire(commit))


@dataclass(frozen=True)
class VerifiedRecord:
    """What a checked proof establishes: the record (None: there is none) of ``key`` at ``height``."""

    height: int
    section: str
    key: bytes
    record: Account | Worker | Job | int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields, the same names ``GET /proof`` uses."""
        r = self.record
        if r is None:
            shown: Any = None
        elif isinstance(r, Account):
            shown = {"balance": r.balance, "nonce": r.nonce}
        elif isinstance(r, int):
            shown = {"allowance": r}
        else:
            shown = r.to_dict()
        return {"height": self.height, "section": self.section, "key": self.key.hex(), "record": shown}


def decode_record(section: str, key: bytes, data: bytes) -> Account | Worker | Job | int:
    """A proof's packed record as the ledger's object; ``ProofRejected`` when it is not one for ``key``."""
    try:
        obj = unpack(data, max_size=MAX_STATE_PROOF_BYTES, field="record")
        if section == "allowance":
            owner, spender, amount = obj
            if owner + spender != key or type(amount) is not int:
                raise ProofRejected("record", "the allowance is not for the owner and spender asked about")
            return amount
        record_key, fields = obj
        if record_key != key:
            raise ProofRejected("record", f"the record is for {record_key!r:.80}, not {key.hex()}")
        if section == "account":
            balance, nonce = fields
            return Account(balance, nonce)
        return Worker.from_list(fields) if section == "worker" else Job.from_list(fields)
    except (DecodeError, TypeError, ValueError) as exc:
        raise ProofRejected("record", f"the record does not decode: {exc}") from None


def verify_state_proof(sp: StateProof, *, chain_id: str, validators: Sequence[AccountId]) -> VerifiedRecord:
    """Check ``sp`` against the trusted ``chain_id`` and ``validators``; the record it proves, or
    :class:`ProofRejected` naming the first link that does not hold."""
    anchor = sp.anchor
    problem = header_problem(anchor, sp.commit, chain_id=chain_id, validators=validators)
    if problem is not None:
        raise ProofRejected(*problem)
    if anchor.state_root != combine_root(sp.state_header, sp.tree_root):
        raise ProofRejected("state_root", "the header and tree root do not give the block's state root")
    try:
        header = unpack(sp.state_header, max_size=MAX_STATE_PROOF_BYTES, field="state_header")
        height, header_chain = header[3], header[1]
    except (DecodeError, TypeError, IndexError, KeyError) as exc:
        raise ProofRejected("state_header", f"does not decode: {exc}") from None
    if header_chain != chain_id or height != anchor.height - 1:
        raise ProofRejected("state_header", f"state of {header_chain!r:.40} at {height!r:.20}, expected "
                                            f"{chain_id!r} at {anchor.height - 1}")
    value_hash = None if sp.record is None else blake2b256(sp.record)
    if not verify_proof(sp.tree_root, raw_tree_key(sp.section, sp.key), value_hash, sp.proof):
        what = "absent" if sp.record is None else "present with this value"
        raise ProofRejected("tree", f"the path does not show the {sp.section} {what} under the tree root")
    record = None if sp.record is None else decode_record(sp.section, sp.key, sp.record)
    return VerifiedRecord(height, sp.section, sp.key, record)
