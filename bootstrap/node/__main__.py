"""``python -m bootstrap.node --home DIR …``: one node in this process, for tests and launchers."""

from bootstrap.node.process import _cli

raise SystemExit(_cli())
