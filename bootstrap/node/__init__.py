"""The node's wiring and lifecycle: :class:`Node` opens a home, starts every room in one trio nursery and stops
them gracefully; ``main_node`` runs one as a process (``dacn node``, ``python -m bootstrap.node``). Beside them:
the in-process event bus the API, dashboard and agent listen to, and the test-only misbehaviour switches."""

from bootstrap.node.events import EVENT_TYPES, EventBus
from bootstrap.node.node import Node
from bootstrap.node.process import NODE_GC_THRESHOLD, main_node, tune_gc_for_node
from bootstrap.node.switches import MAX_CLOCK_SKEW_MS, TestSwitchError, TestSwitches

__all__ = [
    "EVENT_TYPES", "MAX_CLOCK_SKEW_MS", "NODE_GC_THRESHOLD", "EventBus", "Node", "TestSwitchError", "TestSwitches",
    "main_node", "tune_gc_for_node"
]
