"""``dacn verify-proof``: a light client's check of one state record against the genesis validators
(``ledger.lightclient``), from each node asked or from a saved ``GET /proof`` answer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bootstrap.cli.client import NodeClient
from bootstrap.cli.export import CliError


def cmd_verify_proof(args: argparse.Namespace) -> int:
    """Check a state proof from each node named (or from a saved answer) against the genesis validators."""
    from bootstrap.home import load_home_genesis
    from ledger.errors import DecodeError
    from ledger.genesis import load_genesis
    from ledger.lightclient import ProofRejected, StateProof, verify_state_proof

    if bool(args.genesis) == bool(args.home):
        raise CliError("give the trusted chain as --genesis FILE or --home DIR (one of them)")
    genesis = load_genesis(args.genesis) if args.genesis else load_home_genesis(Path(args.home))
    answers: list[tuple[str, dict[str, Any]]] = []
    if args.file:
        try:
            answers.append((args.file, json.loads(Path(args.file).read_text())))
        except (OSError, ValueError) as exc:
            raise CliError(f"{args.file}: not a saved /proof answer: {exc}") from None
    else:
        if not args.section or not args.ident:
            raise CliError("name the record: SECTION ID (e.g. account alice), or give --file")
        query: dict[str, Any] = {"spender": args.spender} if args.spender else {}
        if args.height is not None:
            query["height"] = args.height
        for url in [args.node, *(args.also or [])]:
            answers.append((url, NodeClient(url, timeout=args.http_timeout).get(
                f"/proof/{args.section}/{args.ident}", **query)))
    failed = 0
    for source, answer in answers:
        try:
            sp = StateProof.decode(bytes.fromhex(str(answer.get("proof", ""))))
            verified = verify_state_proof(sp, chain_id=genesis.chain_id, validators=genesis.validators)
            shown = verified.to_dict()
            if answer.get("record") != shown["record"]:
                raise ProofRejected("answer", "the record the node shows is not the one its proof proves")
        except (DecodeError, ProofRejected, ValueError) as exc:
            failed += 1
            print(f"error: {source}: {exc}", file=sys.stderr)
            continue
        print(json.dumps({"source": source, "verified": True, **shown, "anchor_height": sp.anchor.height}, indent=2))
    return 1 if failed else 0
