"""Chain sync: this node's status and blocks served to peers, and the loop that catches up from the highest
peer when consensus says the node is behind (:class:`BlockSync`); state sync, which starts an empty store at a
peer's verified snapshot instead of replaying from genesis (:class:`StateSyncer`, :class:`SnapshotServer`)."""

from bootstrap.sync.blocks import BlockSync
from bootstrap.sync.snapshots import PROTO_SNAPSHOT, SnapshotServer, StateSyncer, SyncProgress, store_is_empty

__all__ = [
    "PROTO_SNAPSHOT", "BlockSync", "SnapshotServer", "StateSyncer", "SyncProgress", "store_is_empty",
]
