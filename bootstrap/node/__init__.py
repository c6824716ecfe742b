"""TODO"""

from bootstrap.node.node import *  # noqa: F403
from bootstrap.node.node import DISPLAY_ID_CACHE, NODE_GC_THRESHOLD, Node, main_node, tune_gc_for_node  # noqa: F401
