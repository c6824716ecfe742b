"""Node homes: the directory a node runs from, and testnets of several homes sharing one genesis.

Layout of a home::

    config.toml        NodeConfig
    genesis.json       the chain's genesis (identical in every home of one network)
    keys/node.json     the node's identity = its ledger account (Keystore format, 0600, optional passphrase)
    keys/faucet.json   devnets only: the faucet key, so any node can fund new clients and workers
    data/chain.sqlite  blocks, commits, roots, the snapshots' rows
    data/chain.sqlite-snapshots/  the snapshots' bytes, one file each
    data/blobs/        content-addressed specs, datasets, result artifacts
    data/peers.json    the p2p peer table

A devnet genesis funds a faucet account and registers every node's key as a staked worker, with parameters the
seed's numbers fit (a stake of 150 is enough, windows long enough for a job to run at about a block a second).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bootstrap.errors import HomeError
from bootstrap.home.config import NodeConfig
from bootstrap.home.keystore import Keystore
from ledger.genesis import Genesis, load_genesis
from p2pnet import Identity, PeerId

GENESIS_FILE = "genesis.json"
NODE_KEY = "node"
FAUCET_KEY = "faucet"

DEVNET_PARAMS: dict[str, Any] = {
    "min_fee": 1,
    "min_stake": 100,
    "default_bid_window": 4,
    "default_commit_window": 40,
    "default_reveal_window": 20,
    # Devnet blocks come every ~0.7 s: plan for 0.5 s, so a 10 s run fits the 40-block commit window twice over.
    "block_time_ms": 500,
    "default_job_time_ms": 10_000,
    # A finished job stays in the state ~10 hours at devnet block times, then leaves it (the state stays bounded).
    "job_retention_blocks": 50_000,
}
NODE_BALANCE = 100_000
NODE_STAKE = 1_000
NODE_CAPACITY = 4
"""Jobs a genesis node key holds at once (worker, verifier or referee roles). Verifiers are capacity-checked
(issue 14), so 1 would let a 4-node devnet run only two jobs at a time; the agent queues its runs and bids only
what it can finish before the deadlines."""
FAUCET_BALANCE = 1_000_000_000


@dataclass(frozen=True)
class HomeInfo:
    """What ``init_home`` / ``make_testnet`` made: where, and who the node is."""

    home: Path
    peer_id: PeerId
    validator: bool
    config: NodeConfig

    @property
    def account(self) -> bytes:
        return self.peer_id.public_key

    def multiaddr(self) -> str:
        """The node's p2p address with its peer id (meaningful once the port is fixed, not 0)."""
        return f"{self.config.p2p_multiaddr()}/p2p/{self.peer_id}"


def home_paths(home: Path) -> dict[str, Path]:
    home = Path(home)
    return {
        "config": home / "config.toml",
        "genesis": home / GENESIS_FILE,
        "keys": home / "keys",
        "data": home / "data",
        "chain": home / "data" / "chain.sqlite",
        "blobs": home / "data" / "blobs",
        "peers": home / "data" / "peers.json",
    }


def load_node_identity(home: Path, passphrase: str | None = None) -> Identity:
    """The node's identity from its keystore (``keys/node.json``)."""
    ks = Keystore(home_paths(home)["keys"], passphrase)
    if not ks.exists(NODE_KEY):
        raise HomeError(str(home), "no node key (run `dacn init`)")
    return Identity(ks.load(NODE_KEY))


def load_home_genesis(home: Path) -> Genesis:
    path = home_paths(home)["genesis"]
    if not path.exists():
        raise HomeError(str(path), "no genesis file (run `dacn init` or `dacn testnet`)")
    return load_genesis(path)


def write_genesis(home: Path, genesis: Genesis) -> Path:
    path = home_paths(home)["genesis"]
    path.write_text(json.dumps(genesis.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def devnet_genesis(
    validators: list[bytes],
    workers: list[bytes],
    faucet: bytes | None,
    *,
    chain_id: str = "dacn-devnet",
    genesis_time: int | None = None,
    params: dict[str, Any] | None = None,
    node_balance: int = NODE_BALANCE,
    node_stake: int = NODE_STAKE,
) -> Genesis:
    """A genesis where ``workers`` are funded, staked CPU workers and ``faucet`` (if any) holds a large balance.

    Every validator is staked as a worker too, listed in ``workers`` or not: genesis refuses a validator without a
    bond an equivocation slash can reach (``ledger.genesis``)."""
    p = dict(DEVNET_PARAMS)
    p.update(params or {})
    if faucet is not None:
        p["faucet"] = faucet.hex()
    allocations = [{"account": a.hex(), "balance": node_balance} for a in dict.fromkeys([*validators, *workers])]
    if faucet is not None:
        allocations.append({"account": faucet.hex(), "balance": FAUCET_BALANCE})
    doc = {
        "chain_id": chain_id,
        "genesis_time": int(time.time() * 1000) if genesis_time is None else genesis_time,
        "allocations": allocations,
        "validators": [v.hex() for v in validators],
        "workers": [
            {"account": w.hex(), "stake": node_stake, "device_kind": "cpu", "device_name": "cpu", "memory_mb": 4096,
             "capacity": NODE_CAPACITY}
            for w in dict.fromkeys([*workers, *validators])
        ],
        "params": p,
    }
    return Genesis.from_dict(doc)


def _prepare(home: Path, overwrite: bool) -> None:
    home = Path(home)
    if home_paths(home)["genesis"].exists() and not overwrite:
        raise HomeError(str(home), "already initialised (genesis.json exists)")
    home.mkdir(parents=True, exist_ok=True)
    home_paths(home)["data"].mkdir(exist_ok=True)


def init_home(
    home: Path,
    *,
    config: NodeConfig | None = None,
    genesis: Genesis | None = None,
    passphrase: str | None = None,
    chain_id: str = "dacn-local",
    seed: bytes | None = None,
    with_faucet: bool = True,
) -> HomeInfo:
    """Create a home. Without ``genesis``, a one-validator chain where this node validates and works and a
    faucet key (kept in this home) funds clients. Refuses to overwrite an initialised home."""
    home = Path(home)
    _prepare(home, overwrite=False)
    cfg = config or NodeConfig()
    cfg.validate()
    ks = Keystore(home_paths(home)["keys"], passphrase)
    key = ks.load(NODE_KEY) if ks.exists(NODE_KEY) else ks.create(NODE_KEY, seed)
    ident = Identity(key)
    if genesis is None:
        faucet = None
        if with_faucet:
            faucet = bytes((ks.load(FAUCET_KEY) if ks.exists(FAUCET_KEY) else ks.create(FAUCET_KEY)).verify_key)
        genesis = devnet_genesis([ident.public_key], [ident.public_key], faucet, chain_id=chain_id)
    write_genesis(home, genesis)
    cfg.save(home)
    return HomeInfo(home, ident.peer_id, ident.public_key in genesis.validators, cfg)


def make_testnet(
    n: int,
    out: Path,
    *,
    validators: int | None = None,
    config: NodeConfig | None = None,
    p2p_port: int | None = None,
    api_port: int | None = None,
    host: str = "127.0.0.1",
    chain_id: str = "dacn-devnet",
    params: dict[str, Any] | None = None,
    passphrase: str | None = None,
    with_faucet: bool = True,
) -> list[HomeInfo]:
    """``n`` homes ``out/node0 … node{n-1}`` sharing one genesis: the first ``validators`` (default all) are
    validators, the rest follow as observers; every node's key is a funded, staked worker.

    With ``p2p_port``, node i listens on ``p2p_port + i`` and bootstraps from node 0; with ``api_port`` node i
    serves its API on ``api_port + i``. Without them ports are 0 (chosen at start) and the caller wires the
    bootstrap addresses itself (in-process tests)."""
    if not 1 <= n <= 256:
        raise HomeError(str(out), f"a testnet has 1..256 nodes, not {n}")
    nv = n if validators is None else validators
    if not 1 <= nv <= n:
        raise HomeError(str(out), f"validators must be in 1..{n}, not {nv}")
    out = Path(out)
    base = config or NodeConfig.devnet()
    homes = [out / f"node{i}" for i in range(n)]
    keys = []
    for h in homes:
        _prepare(h, overwrite=False)
        ks = Keystore(home_paths(h)["keys"], passphrase)
        keys.append(ks.load(NODE_KEY) if ks.exists(NODE_KEY) else ks.create(NODE_KEY))
    idents = [Identity(k) for k in keys]
    faucet_seed = None
    faucet = None
    if with_faucet:
        fk = Keystore(home_paths(homes[0])["keys"], passphrase).get_or_create(FAUCET_KEY)
        faucet_seed, faucet = bytes(fk), bytes(fk.verify_key)
    accounts = [i.public_key for i in idents]
    genesis = devnet_genesis(accounts[:nv], accounts, faucet, chain_id=chain_id, params=params)
    infos = []
    for i, h in enumerate(homes):
        if faucet_seed is not None and i > 0:
            ks = Keystore(home_paths(h)["keys"], passphrase)
            if not ks.exists(FAUCET_KEY):
                ks.create(FAUCET_KEY, faucet_seed)
        p2p = f"{host}:{p2p_port + i if p2p_port is not None else 0}"
        if api_port is not None:
            api: str | None = f"{host}:{api_port + i}"
        else:  # keep the API if the base config has one, on a free port (several nodes share the host)
            api = f"{host}:0" if base.api_listen is not None else None
        cfg = replace(base, moniker=f"node{i}", p2p_listen=p2p, api_listen=api, bootstrap=[])
        if i > 0 and p2p_port is not None:
            cfg.bootstrap = [f"/ip4/{host}/tcp/{p2p_port}/p2p/{idents[0].peer_id}"]
        cfg.validate()
        write_genesis(h, genesis)
        cfg.save(h)
        infos.append(HomeInfo(h, idents[i].peer_id, i < nv, cfg))
    return infos
