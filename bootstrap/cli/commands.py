"""The ``dacn`` command line: make homes and testnets, run a node, manage a local devnet, talk to any node's API,
export the ledger state, and run the demo.

Every subcommand that talks to a node takes ``--node URL`` (default ``$DACN_NODE`` or http://127.0.0.1:5000).
Errors are printed as one ``error: ...`` line on stderr with exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootstrap.cli.client import ClientError, JobWaitTimeout, NodeClient
from bootstrap.cli.export import CliError, export_state
from bootstrap.cli.jobs import add_jobs_parser
from bootstrap.cli.verify import cmd_verify_proof
from bootstrap.errors import NodeError

DEFAULT_NODE = "http://127.0.0.1:5000"


def _passphrase(args: argparse.Namespace) -> str | None:
    var = getattr(args, "passphrase_env", None)
    return os.environ.get(var) or None if var else None


def _out(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def _client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(args.node, timeout=args.http_timeout)


# ------------------------------------------------------------------------------------------------ homes


def cmd_init(args: argparse.Namespace) -> int:
    from bootstrap.home import NodeConfig, init_home

    cfg = NodeConfig()
    if args.p2p:
        cfg.p2p_listen = args.p2p
    if args.api:
        cfg.api_listen = None if args.api == "off" else args.api
    info = init_home(Path(args.home), config=cfg, passphrase=_passphrase(args), chain_id=args.chain_id,
                     with_faucet=not args.no_faucet)
    print(f"initialised {info.home}")
    print(f"  peer id   {info.peer_id}")
    print(f"  validator {info.validator}")
    print(f"  run it:   dacn node --home {info.home}")
    return 0


def cmd_testnet(args: argparse.Namespace) -> int:
    from bootstrap.home import make_testnet

    infos = make_testnet(args.nodes, Path(args.out), validators=args.validators, p2p_port=args.p2p_port,
                         api_port=args.api_port, host=args.host, chain_id=args.chain_id,
                         passphrase=_passphrase(args))
    for i, info in enumerate(infos):
        role = "validator" if info.validator else "observer"
        print(f"node{i}  {info.peer_id}  {role:9}  {info.home}")
    print(f"{len(infos)} homes sharing one genesis in {args.out}")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from bootstrap.home import NodeConfig
    from bootstrap.node import main_node

    home = Path(args.home)
    cfg = NodeConfig.load(home)
    if args.p2p:
        cfg.p2p_listen = args.p2p
    if args.api:
        cfg.api_listen = None if args.api == "off" else args.api
    for addr in args.bootstrap or []:
        if addr not in cfg.bootstrap:
            cfg.bootstrap.append(addr)
    cfg.validate()
    _announce_api_token(home, cfg.api_host_port())
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return main_node(home, cfg, passphrase=_passphrase(args), faulty=args.faulty)


def _announce_api_token(home: Path, api: tuple[str, int] | None) -> None:
    """An API off loopback guards its writes with a bearer token: create it on first start and print it once."""
    from bootstrap.api import ensure_api_token, token_required

    if api is None or not token_required(api[0]):
        return
    token, created = ensure_api_token(home)
    if created:
        print(f"API token for write requests to {api[0]}:{api[1]} (shown once; kept in {home / 'api_token'}):\n"
              f"  Authorization: Bearer {token}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ devnet


def _parse_faulty(items: Sequence[str] | None) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in items or []:
        index, sep, mode = item.partition(":")
        if not sep or not index.isdigit() or not mode:
            raise CliError(f"--faulty expects INDEX:MODE (e.g. 5:random-results), got {item!r}")
        out[int(index)] = mode
    return out


def cmd_devnet_up(args: argparse.Namespace) -> int:
    from bootstrap.cli.devnet import devnet_status, devnet_up, format_table

    def progress(line: str) -> None:
        print(f"  {line}", flush=True)

    start = time.monotonic()
    devnet_up(Path(args.dir), args.nodes, validators=args.validators, api_port=args.api_port,
              p2p_port=args.p2p_port, host=args.host, faulty=_parse_faulty(args.faulty), timeout=args.timeout,
              progress=progress)
    print(f"devnet ready in {time.monotonic() - start:.1f}s\n")
    print(format_table(devnet_status(Path(args.dir))))
    print(f"\nstop it with: dacn devnet down --dir {args.dir}")
    return 0


def cmd_devnet_status(args: argparse.Namespace) -> int:
    from bootstrap.cli.devnet import devnet_status, format_table

    rows = devnet_status(Path(args.dir))
    if args.json:
        _out(rows)
    else:
        print(format_table(rows))
    return 0 if all(r["health"] for r in rows) else 1


def cmd_devnet_down(args: argparse.Namespace) -> int:
    from bootstrap.cli.devnet import devnet_down

    stopped = devnet_down(Path(args.dir), timeout=args.timeout)
    print(f"stopped {len(stopped)} node(s){': ' + ', '.join(f'node{i}' for i in stopped) if stopped else ''}; "
          f"data kept in {args.dir}")
    return 0


# ------------------------------------------------------------------------------------------------ API calls


def cmd_worker_register(args: argparse.Namespace) -> int:
    _out(_client(args).register_worker(args.name, args.stake, args.gpu_type, args.capacity))
    return 0


def cmd_client_register(args: argparse.Namespace) -> int:
    _out(_client(args).register_client(args.name, args.balance))
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    _out(_client(args).balance(args.name))
    return 0


def _dataset_arg(args: argparse.Namespace, client: NodeClient) -> dict[str, Any] | None:
    """The ``dataset`` of a submission: a file is uploaded (``POST /data``, binary) and named by its digest."""
    files = [f for f in (args.csv, args.data) if f]
    if len(files) + bool(args.synthetic) > 1:
        raise CliError("give one of --data, --csv or --synthetic")
    if files:
        path = Path(files[0])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror}") from None
        fmt = "csv" if args.csv else {".npy": "npy", ".npz": "npz"}.get(path.suffix.lower(), "csv")
        up = client.upload_dataset(raw, fmt, target_column=args.target)
        print(f"dataset {up['digest'][:16]}… uploaded ({up['n_samples']} rows × {up['n_features']} features"
              + (", with a target" if up.get("has_target") else "") + f", {up['bytes']} bytes)", flush=True)
        return {"digest": up["digest"]}
    if args.synthetic:
        parts = args.synthetic.split(":")
        names = ("kind", "n_samples", "n_features", "seed")
        if len(parts) > len(names):
            raise CliError("--synthetic is KIND[:SAMPLES[:FEATURES[:SEED]]]")
        syn: dict[str, Any] = {"kind": parts[0]}
        for name, value in zip(names[1:], parts[1:], strict=False):
            if not value.isdigit():
                raise CliError(f"--synthetic {name} must be a non-negative integer, got {value!r}")
            syn[name] = int(value)
        return {"synthetic": syn}
    return None


def describe_job(view: dict[str, Any]) -> str:
    """One line about a job's state: status, who holds which role, and the verdict once there is one."""
    parts = [f"{view.get('status', '?'):9}"]
    for role in ("worker", "verifier", "referee"):
        if view.get(role):
            parts.append(f"{role} {str(view[role])[:12]}…")
    if view.get("panel"):
        parts.append(f"panel of {len(view['panel'])}")
    if view.get("price"):
        parts.append(f"price {view['price']}")
    claims = [o for o in view.get("outcomes") or [] if o.get("outcome") != "result"]
    if claims:
        parts.append("revealed: " + ", ".join(f"{o['role']} {o['words']}" for o in claims))
    if view.get("verdict"):
        parts.append(f"verdict {view['verdict']}" + (f": {view['verdict_words']}" if view.get("verdict_words")
                                                    else ""))
    if view.get("waiting_for"):
        parts.append(f"({view['waiting_for']})")
    return "  ".join(parts)


def follow_job(client: NodeClient, job_id: str, timeout: float, *, quiet: bool = False) -> dict[str, Any]:
    """Wait for a job to settle, printing a line at each change of status."""
    start = time.monotonic()

    def show(view: dict[str, Any]) -> None:
        if not quiet:
            print(f"  [{time.monotonic() - start:6.1f}s] {describe_job(view)}", flush=True)

    return client.wait_job(job_id, timeout=timeout, on_update=show)


def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    params = None
    if args.params:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise CliError(f"--params is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise CliError("--params must be a JSON object")
    res = client.submit_job(args.client, args.model, args.reward, params=params, dataset=_dataset_arg(args, client),
                            verification_fee=args.fee, device=args.device, assign=args.assign,
                            time_limit_ms=args.time_limit_ms, commit_window=args.commit_window)
    print(f"job {res['job_id']} submitted (tx {res['tx_id'][:16]}…, height {res.get('height')})", flush=True)
    if args.no_wait:
        _out(res)
        return 0
    final = follow_job(client, res["job_id"], args.timeout)
    _out(final)
    return 0 if final.get("status") == "verified" else 1


def cmd_job(args: argparse.Namespace) -> int:
    client = _client(args)
    view = follow_job(client, args.job_id, args.timeout) if args.wait else client.job(args.job_id)
    print(describe_job(view), file=sys.stderr)  # the line a person reads; stdout stays JSON
    _out(view)
    if args.result:
        _out(client.job_result(args.job_id))
    return 0


def cmd_tx(args: argparse.Namespace) -> int:
    """Where a tx is: committed, failed, pending, queued, dropped (and why) or unknown to the node."""
    doc = _client(args).tx_status(args.tx_id)
    words = doc["status"] + (f" at height {doc['height']}" if doc.get("height") is not None else "")
    if doc.get("reason"):
        words += f": {doc['reason']}"
    print(words, file=sys.stderr)
    _out(doc)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    doc = {"health": client.health(), "head": client.head(), "stats": client.stats(), "peers": client.peers()}
    if args.json:
        _out(doc)
        return 0
    h, head, stats = doc["health"], doc["head"], doc["stats"]
    print(f"node      {h['peer_id']}  ({'validator' if h.get('validator') else 'observer'})")
    print(f"chain     {h.get('chain_id')}  height {head['height']}  block {str(head.get('block_hash'))[:16]}…  "
          f"root {str(head.get('state_root'))[:16]}…")
    if h.get("signing_refused"):
        print(f"SIGNING REFUSED  {h['signing_refused']}")
    print(f"peers     {doc['peers']['count']}")
    print(f"workers   {stats['active_workers']}/{stats['total_workers']} active")
    print(f"jobs      {stats['total_jobs']} total, {json.dumps(stats['jobs_by_status'])}")
    print(f"supply    {stats['total_supply']}  escrow {stats['escrow_balance']}  staked {stats['total_staked']}")
    return 0


def cmd_state_export(args: argparse.Namespace) -> int:
    doc = export_state(Path(args.home), args.height)
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"state at height {doc['height']} (root {doc['state_root'][:16]}…) written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bootstrap.cli.demo import run_demo

    return run_demo(Path(args.dir), nodes=args.nodes, api_port=args.api_port, p2p_port=args.p2p_port,
                    keep_running=not args.no_keep, timeout=args.timeout, fresh=not args.reuse)


def cmd_loadgen(args: argparse.Namespace) -> int:
    import trio

    from bootstrap.cli.loadgen import LoadConfig, run_load

    urls = [u for item in args.node for u in item.split(",") if u]
    cfg = LoadConfig(urls, rate=args.rate, duration=args.duration, accounts=args.accounts,
                     faucet_home=Path(args.faucet_home) if args.faucet_home else None, batch_ms=args.batch_ms,
                     settle_s=args.settle, http_timeout=args.http_timeout, spread=args.spread)
    report = trio.run(run_load, cfg)
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0


# ------------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dacn", description="dacn: a decentralized AI compute network (node, devnet, client).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_node(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--node", default=os.environ.get("DACN_NODE", DEFAULT_NODE),
                       help="the node's API URL (default $DACN_NODE or %(default)s)")
        p.add_argument("--http-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
        return p

    def with_passphrase(p: argparse.ArgumentParser) -> None:
        p.add_argument("--passphrase-env", metavar="VAR", default="DACN_PASSPHRASE",
                       help="environment variable holding the key passphrase (default %(default)s; unset = none)")

    p = sub.add_parser("init", help="create a node home (a one-validator chain of its own)")
    p.add_argument("--home", required=True)
    p.add_argument("--chain-id", default="dacn-local")
    p.add_argument("--p2p", metavar="HOST:PORT")
    p.add_argument("--api", metavar="HOST:PORT", help="API address, or 'off'")
    p.add_argument("--no-faucet", action="store_true", help="no faucet account in the genesis")
    with_passphrase(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("testnet", help="create N homes sharing one genesis")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--validators", type=int, help="how many of the nodes validate (default all)")
    p.add_argument("--p2p-port", type=int, default=4001)
    p.add_argument("--api-port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--chain-id", default="dacn-devnet")
    with_passphrase(p)
    p.set_defaults(func=cmd_testnet)

    p = sub.add_parser("node", help="run a node in the foreground (Ctrl-C stops it cleanly)")
    p.add_argument("--home", required=True)
    p.add_argument("--bootstrap", action="append", metavar="MULTIADDR", help="a peer to join through (repeatable)")
    p.add_argument("--p2p", metavar="HOST:PORT")
    p.add_argument("--api", metavar="HOST:PORT", help="API address, or 'off'")
    p.add_argument("--faulty", metavar="MODE", help="tests only: random-results, no-reveal, copy-commit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    with_passphrase(p)
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("devnet", help="a local multi-node devnet in the background")
    dsub = p.add_subparsers(dest="devnet_command", metavar="ACTION", required=True)
    d = dsub.add_parser("up", help="start N nodes and wait until they commit blocks")
    d.add_argument("--nodes", type=int, default=4)
    d.add_argument("--dir", required=True)
    d.add_argument("--api-port", type=int, default=5000)
    d.add_argument("--p2p-port", type=int, default=4001)
    d.add_argument("--validators", type=int, help="how many nodes validate (default all; the rest only work)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--faulty", action="append", metavar="INDEX:MODE", help="tests only: make node INDEX cheat")
    d.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    d.set_defaults(func=cmd_devnet_up)
    d = dsub.add_parser("status", help="show the devnet's nodes")
    d.add_argument("--dir", required=True)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_devnet_status)
    d = dsub.add_parser("down", help="stop every node (their data is kept)")
    d.add_argument("--dir", required=True)
    d.add_argument("--timeout", type=float, default=15.0)
    d.set_defaults(func=cmd_devnet_down)

    p = sub.add_parser("worker", help="worker keys on a node")
    wsub = p.add_subparsers(dest="worker_command", metavar="ACTION", required=True)
    w = with_node(wsub.add_parser("register", help="register a local key as a worker (faucet-funded on devnets)"))
    w.add_argument("name")
    w.add_argument("--stake", type=int, required=True)
    w.add_argument("--gpu-type", default="")
    w.add_argument("--capacity", type=float, default=0.0, help="declared compute capacity")
    w.set_defaults(func=cmd_worker_register)

    p = sub.add_parser("client", help="client keys on a node")
    csub = p.add_subparsers(dest="client_command", metavar="ACTION", required=True)
    c = with_node(csub.add_parser("register", help="create a local client key, funded from the faucet"))
    c.add_argument("name")
    c.add_argument("--balance", type=int, default=0)
    c.set_defaults(func=cmd_client_register)

    p = with_node(sub.add_parser("balance", help="an account's balance"))
    p.add_argument("name", help="local key name, peer id or 64-hex account")
    p.set_defaults(func=cmd_balance)

    p = with_node(sub.add_parser("verify-proof", help="check a record (balance, worker, job outcome) with a "
                                 "state proof against the genesis validators, trusting no node"))
    p.add_argument("section", nargs="?", choices=["account", "worker", "job", "allowance"])
    p.add_argument("ident", nargs="?", help="key name, peer id or 64-hex account; a job id; an allowance's owner")
    p.add_argument("--spender", help="allowance only: the spender")
    p.add_argument("--height", type=int, help="the record at this past height (default: the head)")
    p.add_argument("--also", action="append", metavar="URL", help="ask this node too (repeatable)")
    p.add_argument("--genesis", help="the trusted genesis file (chain id and validators)")
    p.add_argument("--home", help="take the trusted genesis from this node home instead")
    p.add_argument("--file", help="check a saved GET /proof answer (JSON) instead of asking a node")
    p.set_defaults(func=cmd_verify_proof)

    p = with_node(sub.add_parser("submit", help="submit a job and follow it until it settles"))
    p.add_argument("--client", required=True, help="the paying client's key name on that node")
    p.add_argument("--model", required=True, help="linear_regression, kmeans, pca, logistic_regression, mlp_train")
    p.add_argument("--reward", type=int, required=True)
    p.add_argument("--fee", type=int, help="verification fee (default: the node's)")
    p.add_argument("--params", help="model parameters as a JSON object")
    p.add_argument("--synthetic", metavar="KIND[:N[:D[:SEED]]]", help="a generated dataset (regression, blobs, "
                   "classification)")
    p.add_argument("--data", metavar="FILE", help="a dataset file (.npy: one 2-D array, .npz: arrays X and y, "
                   "else CSV), uploaded to the node as binary and named by its digest")
    p.add_argument("--csv", metavar="FILE", help="a CSV dataset file (uploaded like --data)")
    p.add_argument("--target", help="the target column, y (a CSV header name, or an index for CSV and .npy)")
    p.add_argument("--device", default=None, help="any or gpu")
    p.add_argument("--assign", choices=("offers", "bids"), default="offers",
                   help="offers (default): assigned at once to a worker with a standing offer, falling back to a "
                        "bid window when none fits; bids: always open a bid window")
    p.add_argument("--time-limit-ms", type=int, default=None, metavar="MS",
                   help="wall time one run may take (default: the chain's default_job_time_ms)")
    p.add_argument("--commit-window", type=int, default=None, metavar="BLOCKS",
                   help="blocks the workers have to run and commit (default: the chain's; it must fit the run, and "
                        "blocks above the default add to the fee)")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_submit)

    p = with_node(sub.add_parser("job", help="a job's status (optionally wait for it, show its result)"))
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--result", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_job)

    add_jobs_parser(sub, with_node)

    p = with_node(sub.add_parser("tx", help="where a tx is: committed, pending, queued, dropped (and why)"))
    p.add_argument("tx_id")
    p.set_defaults(func=cmd_tx)

    p = with_node(sub.add_parser("status", help="a node's chain, peers, workers and jobs"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("state", help="the ledger state")
    ssub = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    s = ssub.add_parser("export", help="write the ledger state as JSON")
    s.add_argument("--home", required=True)
    s.add_argument("--height", type=int)
    s.add_argument("--out", help="file to write (default stdout)")
    s.set_defaults(func=cmd_state_export)

    p = sub.add_parser("loadgen", help="offer signed transfers at a rate and report committed tx/s and latency")
    p.add_argument("--node", action="append", default=None, required=True,
                   help="a node's API URL (repeat, or comma-separate, to spread batches over several)")
    p.add_argument("--rate", type=float, required=True, help="offered transfers per second")
    p.add_argument("--duration", type=float, required=True, help="seconds to offer load")
    p.add_argument("--accounts", type=int, default=16, help="sending accounts (default %(default)s)")
    p.add_argument("--faucet-home", default=None, help="a devnet node home whose faucet key funds the accounts")
    p.add_argument("--batch-ms", type=int, default=100, help="one POST /txs batch every this many ms")
    p.add_argument("--settle", type=float, default=30.0, help="seconds to wait for stragglers to commit")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--spread", action="store_true",
                   help="send whole batches to the nodes in turn instead of each account to one node")
    p.add_argument("--http-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_loadgen)

    p = sub.add_parser("demo", help="a 4-node devnet running one job of each model, left running until Ctrl-C")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--dir", default=".dacn-demo")
    p.add_argument("--api-port", type=int, default=5000)
    p.add_argument("--p2p-port", type=int, default=4001)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each job")
    p.add_argument("--reuse", action="store_true", help="keep an existing demo directory instead of starting fresh")
    p.add_argument("--no-keep", action="store_true", help="stop the nodes at the end instead of waiting for Ctrl-C")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dacn`` entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except JobWaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (CliError, ClientError, NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Library errors (ledger, compute, keystore) are typed and carry their fields; show them, not a trace.
        from bootstrap.home import KeystoreError
        from compute.errors import ComputeError
        from ledger.errors import LedgerError

        if isinstance(exc, LedgerError | ComputeError | KeystoreError | OSError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise

