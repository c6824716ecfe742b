"""Block execution and a node's chain: validate, propose, commit, serve and apply synced blocks.

``execute_block`` is the pure-ish transition (the state is mutated in place, atomically: it either applies the
whole block or leaves the state as it was). :class:`Chain` is the shell around it: it keeps the committed state,
the last header and commit, the mempool, and (optionally) the store; it is the application the consensus machine
and the block syncer call into.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.block import (
    MAX_BLOCK_TX_BYTES,
    MAX_BLOCK_TXS,
    AnyEvidence,
    BadBlockTx,
    BadEvidence,
    Block,
    BlockError,
    BlockHeader,
    Commit,
    WrongHeight,
    make_block,
    validate_block_header,
    verify_commit,
)
from ledger.context import BlockContext, Event, Receipt
from ledger.errors import DecodeError, InvalidTx, LedgerError
from ledger.genesis import Genesis, genesis_state
from ledger.mempool import Mempool
from ledger.rules import apply_block_tx, begin_block, end_block, process_evidence
from ledger.state import State, state_root
from ledger.tx import SignedTx, decode_signed_tx, verify_tx_signature
from ledger.types import AccountId, Height

INITIAL_HEIGHT: Height = 1


def block_context(block: Block) -> BlockContext:
    """The context txs run in: the seed for random draws is the previous block's hash."""
    h = block.header
    return BlockContext(height=h.height, time_ms=h.time_ms, seed=h.prev_hash, proposer=h.proposer)


def execute_block(
    state: State,
    block: Block,
    *,
    verified: Container[bytes] = frozenset(),
    check_signatures: bool = True,
    decoded: Callable[[bytes], SignedTx | None] | None = None,
) -> tuple[State, list[Receipt], list[Event]]:
    """Apply a block: begin_block → every tx → evidence → end_block. All or nothing.

    A block is invalid if any tx cannot pay for itself (:class:`BadBlockTx`: undecodable, a bad signature, a wrong
    nonce, a fee it cannot pay); a tx whose payload fails is kept as a failed tx, charged its fee
    (``ledger.rules.apply_block_tx``; its receipt carries the error). Signatures whose tx id is in ``verified`` were
    checked at mempool admission and are not checked again. ``decoded`` maps a tx id to a tx already decoded
    (the mempool's): the id is the hash of the encoded bytes, so a hit is that same tx and is not decoded again.
    """
    ctx = block_context(block)
    sp = state.savepoint()
    try:
        receipts: list[Receipt] = []
        state, events = begin_block(state, ctx)
        events = list(events)
        for i, (raw, tx_id) in enumerate(zip(block.txs, block.tx_ids, strict=True)):
            try:
                stx = decoded(tx_id) if decoded is not None else None
                if stx is None:
                    stx = decode_signed_tx(raw)
                if check_signatures and stx.tx_id not in verified:
                    verify_tx_signature(stx, block.header.chain_id)
                state, receipt = apply_block_tx(state, stx, ctx, verified=True)
            except (DecodeError, InvalidTx) as exc:
                raise BadBlockTx(i, str(exc)) from exc
            receipts.append(receipt)
        events.extend(_after_txs(state, block.evidence, ctx))
    except BaseException:
        state.rollback_to(sp)
        raise
    state.release(sp)
    return state, receipts, events


def _after_txs(state: State, evidence: Sequence[AnyEvidence], ctx: BlockContext) -> list[Event]:
    """The part of a block's execution after its txs: evidence, then ``end_block`` (``state`` written in place)."""
    events: list[Event] = []
    for ev in evidence:
        events.extend(process_evidence(state, ev.offender, ctx)[1])
        state.note_punished(ev.key, ctx.height)
    # The next block refuses evidence from below this height (Chain._check_evidence), so no offence there can be
    # punished again and the state forgets it: the set stays as small as the evidence a block may carry.
    state.expire_punished(ctx.height + 1 - state.params.evidence_max_age)
    events.extend(end_block(state, ctx)[1])
    return events


@dataclass(frozen=True)
class _Executed:
    """A validated block's effect on the committed state ``root``: its writes (``State.changes_since``), receipts
    and events, so that committing it replays the writes instead of running every tx again."""

    root: bytes
    changes: list[tuple[Any, Any, Any, str | None]]
    receipts: list[Receipt]
    events: list[Event]


# How many mempool candidates a block build may examine per tx slot before it stops looking.
REAP_LOOKAHEAD = 2

# Validated blocks whose effect is kept for their commit (one per round at most; a few rounds are plenty).
EXECUTED_KEEP = 4


@dataclass(frozen=True)
class CommittedBlock:
    """What a commit produced: the block, its commit, the state root after it, receipts and events."""

    block: Block
    commit: Commit
    state_root: bytes
    receipts: list[Receipt]
    events: list[Event]


class Chain:
    """A node's view of the chain: committed state, last block and commit, mempool, optional store.

    ``state`` is always the committed state: the mempool admits against it and readers see it. Validating or
    proposing a block runs it under a savepoint that is rolled back at once. A block found valid keeps what its
    execution wrote (``State.changes_since``, taken before the rollback) with its receipts and events, so its
    commit replays those writes instead of executing the block a second time; a block committed without that
    record (never validated here, or validated on a state that has moved since) is executed as before. A block
    this node built is kept the same way from the build, so validating its own proposal checks only the header.
    """

    def __init__(
        self,
        genesis: Genesis,
        *,
        state: State | None = None,
        last_header: BlockHeader | None = None,
        last_commit: Commit | None = None,
        store: object | None = None,
        mempool: Mempool | None = None,
    ) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.validators: list[AccountId] = list(genesis.validators)
        self.state = state if state is not None else genesis_state(genesis)
        self.last_header = last_header
        self.last_commit = last_commit
        self.store = store  # a ledger.store.BlockStore; typed loosely to keep the import one-way
        self.mempool = mempool if mempool is not None else Mempool(self.chain_id, self.state)
        self.mempool.state = self.state
        self._root = state_root(self.state)
        self._validated: set[bytes] = set()  # hashes of blocks at next_height found valid
        self._executed: dict[bytes, _Executed] = {}  # their effects, by block hash (at most EXECUTED_KEEP)
        # Without a store, committed blocks and commits stay in memory (simulations, tests).
        self._recent: list[Block] = []
        self._commits: dict[Height, Commit] = {}

    # ------------------------------------------------------------------------------------------ queries

    @property
    def height(self) -> Height:
        """The last committed height (``INITIAL_HEIGHT - 1`` before any block)."""
        return INITIAL_HEIGHT - 1 if self.last_header is None else self.last_header.height

    @property
    def next_height(self) -> Height:
        return self.height + 1

    @property
    def first_height(self) -> Height:
        """The lowest committed block this node can serve: 1, or above it when the store was started by state sync
        or pruned (``ledger.store.BlockStore.first_height``). Every block from it to :attr:`height` is kept."""
        if self.store is not None:
            return self.store.first_height  # type: ignore[attr-defined, no-any-return]
        return INITIAL_HEIGHT

    @property
    def root(self) -> bytes:
        """The state root after the last committed block."""
        return self._root

    def value_id(self, block: Block) -> bytes:
        return block.hash()

    # ------------------------------------------------------------------------------------- speculation

    def validate_block(self, block: Block) -> None:
        """Check a block as the next one; raises :class:`BlockError`. The committed state is left as it was."""
        bh = block.hash()
        if bh in self._validated:
            return
        self._check_header_and_evidence(block)
        done = self._executed.get(bh)
        if done is None or done.root != self._root:  # else: our own proposal, executed as it was built
            sp = self.state.savepoint()
            try:
                _, receipts, events = execute_block(
                    self.state, block, verified=self.mempool.verified, decoded=self.mempool.get
                )
                changes = self.state.changes_since(sp)
            finally:
                self.state.rollback_to(sp)
            self._keep_executed(bh, _Executed(self._root, changes, receipts, events))
        self._validated.add(bh)

    def _keep_executed(self, block_hash: bytes, done: _Executed) -> None:
        self._executed[block_hash] = done
        while len(self._executed) > EXECUTED_KEEP:
            del self._executed[next(iter(self._executed))]

    def validate(self, height: Height, block: Block) -> bool:
        """The consensus machine's validity predicate."""
        if height != self.next_height:
            return False
        try:
            self.validate_block(block)
        except BlockError:
            return False
        return True

    def _check_header_and_evidence(self, block: Block) -> None:
        """Everything about a next block that does not need executing it; raises :class:`BlockError`."""
        validate_block_header(
            block,
            chain_id=self.chain_id,
            prev=self.last_header,
            initial_height=INITIAL_HEIGHT,
            genesis_time_ms=self.genesis.genesis_time,
            state_root=self._root,
            validators=self.validators,
        )
        self._check_evidence(block)

    @property
    def evidence_max_age(self) -> int:
        """Evidence older than this many blocks is refused (``params.evidence_max_age``), so the state's set of
        punished offences (``State.punished``) holds only the last ones, and stake unbonded after an
        offence is still unbonding whenever its evidence can be included (``params.unbonding_period`` is longer)."""
        return self.state.params.evidence_max_age

    def _check_evidence(self, block: Block) -> None:
        max_age = self.evidence_max_age
        for ev in block.evidence:
            if block.height - ev.height > max_age:
                raise BadEvidence(f"evidence from height {ev.height} is older than {max_age} blocks")
            punished_at = self.state.punished.get(ev.key)
            if punished_at is not None:
                raise BadEvidence(f"offence already punished at height {punished_at}")

    def pending_evidence(self, evidence: Sequence[AnyEvidence]) -> list[AnyEvidence]:
        """The evidence worth putting into the next block: fresh, unpunished, one per offence."""
        out: dict[tuple[bytes, int, int, int], AnyEvidence] = {}
        for ev in evidence:
            if ev.key in self.state.punished or self.next_height - ev.height > self.evidence_max_age:
                continue
            if ev.height >= self.next_height:
                continue
            out.setdefault(ev.key, ev)
        return list(out.values())[:64]

    # --------------------------------------------------------------------------------------- proposing

    def build(
        self,
        height: Height,
        round_: int,
        proposer: AccountId,
        now_ms: int,
        evidence: Sequence[AnyEvidence] = (),
        *,
        max_txs: int = MAX_BLOCK_TXS,
        max_bytes: int = MAX_BLOCK_TX_BYTES,
    ) -> Block:
        """Build the next block from the mempool: txs in fee order, each run as the block will run it; a tx that
        cannot pay for itself is left out (with its sender's later txs) and the block refilled from the rest."""
        if height != self.next_height:
            raise BlockError(f"asked to build height {height}, next is {self.next_height}")
        prev = self.last_header
        prev_time = self.genesis.genesis_time if prev is None else prev.time_ms
        time_ms = max(now_ms, prev_time + 1)
        prev_hash = bytes(32) if prev is None else prev.hash()
        ctx = BlockContext(height=height, time_ms=time_ms, seed=prev_hash, proposer=proposer)
        chosen_evidence = self.pending_evidence(evidence)
        chosen: list[SignedTx] = []
        receipts: list[Receipt] = []
        changes = None
        sp = self.state.savepoint()
        try:
            _, begun = begin_block(self.state, ctx)
            events = list(begun)
            # Pending txs in block order; a tx that cannot pay for itself is skipped with every later tx of its
            # sender (they need its nonce), and the block is refilled from the rest, at most REAP_LOOKAHEAD
            # candidates per slot so a pool of unpayable txs cannot make building slow.
            blocked: set[AccountId] = set()
            size = examined = 0
            for stx in self.mempool.iter_reap():
                examined += 1
                if len(chosen) >= max_txs or examined > REAP_LOOKAHEAD * max_txs:
                    break
                if stx.sender in blocked:
                    continue
                n = len(stx.encode())
                if size + n > max_bytes:
                    blocked.add(stx.sender)
                    continue
                try:
                    _, receipt = apply_block_tx(self.state, stx, ctx, verified=True)
                except InvalidTx:
                    blocked.add(stx.sender)  # it left no trace: the state is as if the block never held it
                    continue
                chosen.append(stx)
                receipts.append(receipt)
                size += n
            # The rest of the block's execution (as execute_block runs it), so that validating our own proposal
            # need not run it all again; should it fail, validation finds out as it always did.
            try:
                events.extend(_after_txs(self.state, chosen_evidence, ctx))
                changes = self.state.changes_since(sp)
            except LedgerError:
                changes = None
        finally:
            self.state.rollback_to(sp)
        block = make_block(
            chain_id=self.chain_id,
            height=height,
            round_=round_,
            prev_hash=prev_hash,
            time_ms=time_ms,
            proposer=proposer,
            state_root=self._root,
            validators=self.validators,
            txs=[s.encode() for s in chosen],
            last_commit=self.last_commit,
            evidence=chosen_evidence,
        )
        if changes is not None:
            self._keep_executed(block.hash(), _Executed(self._root, changes, receipts, events))
        return block

    # ---------------------------------------------------------------------------------------- committing

    def commit_block(self, block: Block, commit: Commit) -> CommittedBlock:
        """Make a decided block final: execute it, persist, update the mempool."""
        bh = block.hash()
        if commit.block_hash != bh or commit.height != block.height:
            raise BlockError("the commit is not for this block")
        if bh not in self._validated:
            self._check_header_and_evidence(block)
        done = self._executed.get(bh)
        touched: list[AccountId] | None = None  # unknown: the mempool re-checks every sender
        if done is not None and done.root == self._root:
            # Validated on this very committed state (only rolled-back speculation ran since): replay its writes.
            self.state.redo(done.changes)
            receipts, events = done.receipts, done.events
            # Those writes are all the block changed, so the mempool re-checks only their accounts' senders.
            touched = [key for _container, key, _value, section in done.changes if section == "account"]
        else:
            # A block validated earlier had its signatures checked then; only the state transition runs again.
            _, receipts, events = execute_block(
                self.state, block, verified=self.mempool.verified, check_signatures=bh not in self._validated,
                decoded=self.mempool.get,
            )
        self._validated.clear()
        self._executed.clear()
        root = state_root(self.state)
        if self.store is not None:
            self.store.save_block(block, commit, self.state, root)  # type: ignore[attr-defined]
        else:
            self._recent.append(block)
            self._commits[block.height] = commit
        self._root = root
        self.last_header = block.header
        self.last_commit = commit
        self.mempool.update(self.state, block.tx_ids, touched)
        return CommittedBlock(block, commit, root, receipts, events)

    def commit(self, block: Block, commit: Commit) -> None:
        """The consensus machine's Decide action."""
        self.commit_block(block, commit)

    # -------------------------------------------------------------------------------------- block sync

    def get_blocks(self, from_height: Height, to_height: Height, limit: int = 64) -> list[tuple[Block, Commit]]:
        """Committed blocks in [from, to] with the commit that finalised each, at most ``limit``; none when ``from``
        is below :attr:`first_height` (not kept here)."""
        to_height = min(to_height, self.height, from_height + limit - 1)
        if from_height < INITIAL_HEIGHT or to_height < from_height:
            return []
        if self.store is not None:
            return self.store.get_blocks(from_height, to_height)  # type: ignore[attr-defined, no-any-return]
        out = []
        for h in range(from_height, to_height + 1):
            out.append((self._recent[h - INITIAL_HEIGHT], self._commits[h]))
        return out

    def block_hash(self, height: Height) -> bytes | None:
        """The hash of the committed block at ``height``; None when it is not kept here (or not committed yet)."""
        if not self.first_height <= height <= self.height:
            return None
        if self.store is not None:
            return self.store.block_hash(height)  # type: ignore[attr-defined, no-any-return]
        return self._recent[height - INITIAL_HEIGHT].hash()

    def apply_synced(self, block: Block, commit: Commit) -> bool:
        """Apply a block fetched from a peer after checking its commit's signatures; False if it does not hold."""
        try:
            self.apply_synced_block(block, commit)
        except BlockError:
            return False
        return True

    def apply_synced_block(self, block: Block, commit: Commit) -> CommittedBlock:
        """Like :meth:`apply_synced` but raising the :class:`BlockError` that explains a refusal."""
        if block.height != self.next_height:
            raise WrongHeight(self.next_height, block.height)
        verify_commit(commit, self.validators, self.chain_id, height=block.height, block_hash=block.hash())
        self.validate_block(block)
        return self.commit_block(block, commit)
