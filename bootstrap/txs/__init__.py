"""Transactions in and out of this node: local submission and gossip of signed txs, admission bookkeeping, and
the commit index that tells a client where its tx ended up (:class:`TxDesk`)."""

from bootstrap.txs.desk import TX_INDEX_SIZE, TxDesk

__all__ = [
    "TX_INDEX_SIZE", "TxDesk"
]
