"""The node's side of consensus: the driver that feeds one ``ledger`` consensus machine from one input channel
(network messages, timeouts, synced blocks) and carries out its actions, and the double-sign guard that keeps a
validator's own votes on disk before they are sent."""

from bootstrap.consensus.driver import BYZANTINE_MODES, ConsensusDriver, DriverStats
from bootstrap.consensus.signstate import SignState

__all__ = [
    "BYZANTINE_MODES", "ConsensusDriver", "DriverStats", "SignState"
]
