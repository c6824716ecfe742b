"""The tx topics' gossip validators: ``dacn/tx/1`` (one signed tx) and ``dacn/txs/1`` (a batch).

Mempool admission is the validator: what it admits is forwarded, garbage and bad signatures blame the relayer,
and txs refused for state reasons (a stale nonce, a spent balance) are not the relayer's fault.
"""

from __future__ import annotations

from collections.abc import Callable

from bootstrap.errors import WireError
from bootstrap.gossip.wire import decode_tx_batch
from ledger.errors import BadSignature, DecodeError, InvalidTx, LedgerError
from ledger.mempool import Admission, AlreadyInMempool, Mempool, MempoolError
from ledger.tx import decode_signed_tx
from p2pnet import PeerId, ValidationResult


class TxTopics:
    """Validators for both tx topics over one mempool; ``note_admission`` hears of every tx that became pending,
    ``counters`` is the node's counter table."""

    def __init__(self, mempool: Mempool, note_admission: Callable[[Admission], None],
                 counters: dict[str, int]) -> None:
        self.mempool = mempool
        self.note_admission = note_admission
        self.counters = counters

    def validate_tx(self, peer: PeerId, data: bytes) -> ValidationResult:
        """Mempool admission is the validator: accept what it admits, blame senders of garbage.

        Gossip does not keep a sender's txs in nonce order (a relayed copy can overtake the direct one); the
        mempool queues early nonces itself and promotes them when their turn comes."""
        self.counters["txs_gossip_in"] += 1
        try:
            admission = self.mempool.admit(data)
        except AlreadyInMempool:
            return ValidationResult.IGNORE
        except DecodeError:
            self.counters["txs_gossip_rejected"] += 1
            return ValidationResult.REJECT
        except InvalidTx as exc:
            if type(exc).__name__ == "BadSignature":
                self.counters["txs_gossip_rejected"] += 1
                return ValidationResult.REJECT
            return ValidationResult.IGNORE  # stale nonce, spent balance …: not the relaying peer's fault
        except MempoolError:
            return ValidationResult.IGNORE
        self.note_admission(admission)
        return ValidationResult.ACCEPT  # queued early txs too: signature checked, and others may need them

    def validate_tx_batch(self, peer: PeerId, data: bytes) -> ValidationResult:
        """A ``dacn/txs/1`` batch: admit each new tx, then forward the batch once (ACCEPT) if any was new.

        REJECT (the relayer is blamed) if the batch or any tx in it does not decode or any new tx's signature is
        bad; every signature is checked before anything is admitted, so a bad item cannot leave us holding txs we
        then decline to relay (the honest batch carrying them would find nothing new and stop here). IGNORE if
        nothing in it was new. Txs refused for state reasons (a stale nonce, a spent balance) are not the
        relayer's fault: like early nonces, they do not change the verdict."""
        mempool = self.mempool
        self.counters["tx_batches_in"] += 1
        try:
            stxs = [decode_signed_tx(raw) for raw in decode_tx_batch(data)]
            fresh = [stx for stx in stxs if mempool.get(stx.tx_id) is None]
            for stx in fresh:
                mempool.check_signature(stx)
        except (WireError, DecodeError, BadSignature):
            self.counters["tx_batches_rejected"] += 1
            return ValidationResult.REJECT
        self.counters["tx_batch_txs_in"] += len(stxs)
        new = 0
        for stx in fresh:
            try:
                admission = mempool.admit_tx(stx)
            except LedgerError:  # a state reason, a full pool, or the same tx twice in the batch
                continue
            self.note_admission(admission)
            new += 1
        return ValidationResult.ACCEPT if new else ValidationResult.IGNORE
