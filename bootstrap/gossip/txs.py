"""The tx topics' gossip validators: ``dacn/tx/1`` (one signed tx) and ``dacn/txs/1`` (a batch).

Mempool admission is the validator: what it admits is forwarded, garbage and bad signatures blame the relayer,
and txs refused for state reasons (a stale nonce, a spent balance) are not the relayer's fault.

A tx pays before its signature is checked: each fresh tx first goes through ``Mempool.precheck`` (duplicate,
nonce, fee and balance against the committed state, the high-water marks), a dictionary lookup or two; only
what passes costs an ed25519 verification. A flood of validly signed txs the pool refuses anyway costs no
verification at all.

Blame for unfunded txs. A tx whose sender cannot pay it from the committed balance (``InsufficientFunds`` in the
precheck) adds ``UNFUNDED_BLAME`` = w = 0.01 to the relayer's invalid-message counter (gossipsub's P4, weighted
-10 × counter², decayed by d = 0.95 per heartbeat and zeroed below 0.01), at most ``UNFUNDED_BLAME_CAP`` = 0.25
per message. High-water refusals, stale nonces and low fees are never blamed: an honest relayer sees those races
(a block landed, the pool filled), and neither is anything while this node is behind the chain (``lagging``):
txs of accounts funded in blocks we lack look unfunded to us, through no fault of the honest peers relaying them.

The inequality. A peer relaying N unfunded txs per heartbeat holds a counter of w·N/(1 − d) = 20·w·N in the
steady state, a score of −10·(20·w·N)². The graylist (−80) needs 20·w·N > √8 ≈ 2.83, i.e. w·N > 0.141:
N > 14 unfunded txs per heartbeat sustained, one per message (N > 21 for a peer that also earned the full +100 of
first deliveries); in full batches of 256 the cap makes w = 0.25/256, N > 145. Within one heartbeat the cap per
message decides: 12 batches of unfunded txs (0.25 each, 3.0 > √8) graylist the relayer, 17 with the full
first-delivery bonus (> √18); 283 single txs do. A graylisted peer's RPCs go unread and sink it on to the
disconnect threshold (−100). An honest relayer relays at most the few txs whose funds were spent while they
travelled, or whose funding block we have not committed before a vote of the next height says we lack it (then
``lagging``): k ≪ 14 per heartbeat, and rarely. One such tx per heartbeat (0.01) is zeroed at each heartbeat
(0.0095 < 0.01); even k = 5 sustained holds −10·(20·0.05)² = −10, against the up to +100 its funded txs earn it:
an honest relayer keeps a score ≥ 0.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from bootstrap.errors import WireError
from bootstrap.gossip.wire import decode_tx_batch
from ledger.errors import BadSignature, DecodeError, InsufficientFunds, InvalidTx, LedgerError
from ledger.mempool import Admission, AlreadyInMempool, Mempool, MempoolError
from ledger.tx import MAX_TX_BYTES, SignedTx, decode_signed_tx
from p2pnet import PeerId, ValidationResult

UNFUNDED_BLAME = 0.01  # P4 weight per relayed tx whose sender cannot pay it (see the module docstring)
UNFUNDED_BLAME_CAP = 0.25  # per message: a batch of 256 such txs weighs a quarter of one invalid message


class _Triage(enum.Enum):
    """What the precheck says of a tx before its signature: check it, skip it, or skip it and blame lightly."""

    CHECK = "check"
    SKIP = "skip"
    UNFUNDED = "unfunded"


class TxTopics:
    """Validators for both tx topics over one mempool; ``note_admission`` hears of every tx that became pending,
    ``counters`` is the node's counter table. ``note_invalid(peer, weight)`` (the gossip router's) is told of
    relayers of unfunded txs, unless ``lagging()`` says this node is behind the chain; both are wired once the
    host and block sync exist, and without ``note_invalid`` nobody is blamed."""

    def __init__(self, mempool: Mempool, note_admission: Callable[[Admission], None],
                 counters: dict[str, int], note_invalid: Callable[[PeerId, float], None] | None = None,
                 lagging: Callable[[], bool] = lambda: False) -> None:
        self.mempool = mempool
        self.note_admission = note_admission
        self.counters = counters
        self.note_invalid = note_invalid
        self.lagging = lagging
        counters.setdefault("txs_gossip_unfunded", 0)  # relayed txs whose sender could not pay them

    def validate_tx(self, peer: PeerId, data: bytes) -> ValidationResult:
        """Mempool admission is the validator: accept what it admits, blame senders of garbage.

        Gossip does not keep a sender's txs in nonce order (a relayed copy can overtake the direct one); the
        mempool queues early nonces itself and promotes them when their turn comes."""
        self.counters["txs_gossip_in"] += 1
        if len(data) > MAX_TX_BYTES:
            return ValidationResult.IGNORE  # as admission answers it (TxTooLarge)
        try:
            stx = decode_signed_tx(data)
        except DecodeError:
            self.counters["txs_gossip_rejected"] += 1
            return ValidationResult.REJECT
        triage, expected = self._triage(stx, len(data))
        if triage is not _Triage.CHECK:
            self._blame_unfunded(peer, 1 if triage is _Triage.UNFUNDED else 0)
            return ValidationResult.IGNORE
        try:
            admission = self.mempool.admit_tx(stx, expected=expected)  # prechecked just now, by the triage
        except AlreadyInMempool:
            return ValidationResult.IGNORE
        except BadSignature:
            self.counters["txs_gossip_rejected"] += 1
            return ValidationResult.REJECT
        except (InvalidTx, MempoolError):
            return ValidationResult.IGNORE  # stale nonce, spent balance, full pool …: not the relaying peer's fault
        self.note_admission(admission)
        return ValidationResult.ACCEPT  # queued early txs too: signature checked, and others may need them

    def validate_tx_batch(self, peer: PeerId, data: bytes) -> ValidationResult:
        """A ``dacn/txs/1`` batch: admit each new tx, then forward the batch once (ACCEPT) if any was new.

        Each tx is prechecked first; what the precheck refuses costs no signature check and is skipped (an
        unfunded sender blames the relayer lightly). REJECT (the relayer is blamed) if the batch or any tx in it
        does not decode or any prechecked tx's signature is bad; every such signature is checked before anything
        is admitted, so a bad item cannot leave us holding txs we then decline to relay (the honest batch carrying
        them would find nothing new and stop here). IGNORE if nothing in it was new. Txs refused for state reasons
        (a stale nonce, a spent balance) do not change the verdict, like early nonces."""
        mempool = self.mempool
        self.counters["tx_batches_in"] += 1
        try:
            stxs = [decode_signed_tx(raw) for raw in decode_tx_batch(data)]
        except (WireError, DecodeError):
            self.counters["tx_batches_rejected"] += 1
            return ValidationResult.REJECT
        fresh: list[SignedTx] = []
        unfunded = 0
        for stx in stxs:
            triage, _ = self._triage(stx)
            if triage is _Triage.CHECK:
                fresh.append(stx)
            elif triage is _Triage.UNFUNDED:
                unfunded += 1
        self._blame_unfunded(peer, unfunded)
        try:
            for stx in fresh:
                mempool.check_signature(stx)
        except BadSignature:
            self.counters["tx_batches_rejected"] += 1
            return ValidationResult.REJECT
        self.counters["tx_batch_txs_in"] += len(stxs)
        new = 0
        for stx in fresh:
            try:
                # prechecked again: an earlier tx of the batch may have moved its sender's nonce or filled the pool
                admission = mempool.admit_tx(stx)
            except LedgerError:  # a state reason, a full pool, or the same tx twice in the batch
                continue
            self.note_admission(admission)
            new += 1
        return ValidationResult.ACCEPT if new else ValidationResult.IGNORE

    # ------------------------------------------------------------------------------------------- helpers

    def _triage(self, stx: SignedTx, size: int | None = None) -> tuple[_Triage, int | None]:
        """Whether ``stx`` is worth its signature check: the mempool's precheck passes and its nonce is not one
        of the sender's pending ones (admission would refuse that as BadNonce after the check); with the
        sender's next nonce the precheck returned (None when it refused)."""
        try:
            expected = self.mempool.precheck(stx, size)
        except InsufficientFunds:
            return _Triage.UNFUNDED, None
        except LedgerError:  # already here, stale nonce, low fee, the high-water marks
            return _Triage.SKIP, None
        return (_Triage.CHECK if stx.nonce >= expected else _Triage.SKIP), expected

    def _blame_unfunded(self, peer: PeerId, n: int) -> None:
        """Tell the router that ``peer`` relayed ``n`` txs whose senders cannot pay them (one message's worth)."""
        if not n:
            return
        self.counters["txs_gossip_unfunded"] += n
        if self.note_invalid is not None and not self.lagging():
            self.note_invalid(peer, min(n * UNFUNDED_BLAME, UNFUNDED_BLAME_CAP))
