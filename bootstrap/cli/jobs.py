"""``dacn jobs``: the chain's jobs a page at a time (``GET /jobs``), newest first, filtered by status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bootstrap.cli.client import NodeClient
from ledger.state import JOB_STATUSES

PAGE = 50


def job_line(j: dict[str, Any]) -> str:
    """One job as a table row: id, model, status, reward, the height it was submitted, its worker."""
    worker = j.get("worker_id") or "–"
    return (f"{j['job_id'][:16]}…  {j.get('model') or '–'!s:<19} {j['status']:<9} {j.get('reward') or 0:>8}  "
            f"{j.get('submitted_at') or 0:>8}  {worker[:20]}")


def cmd_jobs(args: argparse.Namespace) -> int:
    """Print a page of jobs (or, with ``--all``, every page, counting them on stderr as they come)."""
    client = NodeClient(args.node, timeout=args.http_timeout)
    path = "/jobs/pending" if args.pending else "/jobs"
    query: dict[str, Any] = {"limit": args.limit, "order": "oldest" if args.oldest else "newest"}
    if args.status and not args.pending:
        query["status"] = args.status
    cursor = args.cursor
    shown = 0
    while True:
        page = client.get(path, **query, **({"cursor": cursor} if cursor else {}))
        if shown == 0:
            counts = ", ".join(f"{s} {n}" for s, n in sorted(page["counts"].items())) or "none"
            print(f"{page['count']} jobs match ({counts} on the chain)", file=sys.stderr)
        if shown == 0 and not args.json:
            print(f"{'job':<17}  {'model':<19} {'status':<9} {'reward':>8}  {'height':>8}  worker")
        for j in page["jobs"]:
            print(json.dumps(j, sort_keys=True) if args.json else job_line(j))
        shown += len(page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None or not args.all:
            break
        print(f"… {shown} of {page['count']}", file=sys.stderr)
    if cursor is not None:
        print(f"{shown} of {page['count']} shown; the next page: dacn jobs --cursor {cursor}"
              + (" --pending" if args.pending else f" --status {args.status}" if args.status else ""),
              file=sys.stderr)
    return 0


def add_jobs_parser(sub: Any, with_node: Any) -> None:
    """Register ``dacn jobs`` on the CLI's subcommands."""
    p = with_node(sub.add_parser("jobs", help="the chain's jobs, a page at a time (newest first)"))
    p.add_argument("--status", choices=JOB_STATUSES)
    p.add_argument("--pending", action="store_true", help="only jobs not yet finished")
    p.add_argument("--limit", type=int, default=PAGE, help="jobs per page, 1 to 500 (default %(default)s)")
    p.add_argument("--cursor", help="start after this position (printed at the end of a page)")
    p.add_argument("--oldest", action="store_true", help="oldest first")
    p.add_argument("--all", action="store_true", help="every page, not just the first")
    p.add_argument("--json", action="store_true", help="one JSON object per job")
    p.set_defaults(func=cmd_jobs)
