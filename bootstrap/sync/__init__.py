"""Chain sync: this node's status and blocks served to peers, and the loop that catches up from the highest
peer when consensus says the node is behind (:class:`BlockSync`)."""

from bootstrap.sync.blocks import BlockSync

__all__ = [
    "BlockSync"
]
