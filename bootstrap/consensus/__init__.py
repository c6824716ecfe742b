"""The node's side of consensus: the driver that feeds one ``ledger`` consensus machine from one input channel
(network messages, timeouts, synced blocks) and carries out its actions, and the write-ahead log that keeps a
validator's signatures, lock and valid values on disk before they are sent (and rebuilds the machine from them
after a crash)."""

from bootstrap.consensus.driver import BYZANTINE_MODES, ConsensusDriver, DriverStats
from bootstrap.consensus.wal import MAX_RECORD_BYTES, ConsensusWal, WalCorrupt

__all__ = ["BYZANTINE_MODES", "MAX_RECORD_BYTES", "ConsensusDriver", "ConsensusWal", "DriverStats", "WalCorrupt"]
