"""The ``dacn`` command line and what it launches: the subcommands (``commands``), the HTTP client every
subcommand talks to a node with (``client``), the local devnet launcher (``devnet``), the demo walkthrough
(``demo``) and the load generator (``loadgen``). Nothing here runs inside a node: it talks to nodes over their
REST API, or starts them as processes."""

from bootstrap.cli.client import (
    TERMINAL_JOB_STATUSES,
    ApiRequestError,
    ClientError,
    JobWaitTimeout,
    NodeClient,
    NodeUnreachable,
)
from bootstrap.cli.commands import build_parser, export_state, main

__all__ = [
    "TERMINAL_JOB_STATUSES", "ApiRequestError", "ClientError", "JobWaitTimeout", "NodeClient", "NodeUnreachable",
    "build_parser", "export_state", "main"
]
