"""Node configuration: defaults for a real network, a ``test()`` preset for loopback tests, ``validate()``, and
the TOML file in a node's home (``<home>/config.toml``).

Addresses are written ``HOST:PORT`` (the CLI's form); ``p2p_multiaddr()`` turns the p2p one into the multiaddr
the host listens on. Port 0 means "any free port" (tests).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bootstrap.errors import ConfigError
from ledger.consensus import ConsensusConfig
from p2pnet import HostConfig, Multiaddr

CONFIG_FILE = "config.toml"


def parse_host_port(text: str, fld: str) -> tuple[str, int]:
    """``"127.0.0.1:4001"`` → ``("127.0.0.1", 4001)``; raises :class:`ConfigError` naming ``fld``."""
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(fld, text, "expected HOST:PORT")
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(fld, text, "empty host")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(fld, text, "port is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(fld, text, "port must be in 0..65535")
    return host, port


@dataclass
class AgentConfig:
    """The worker agent's policy (read by ``bootstrap.agent.shell``)."""

    auto_coordinate: bool = True
    # Bid this share of a job's reward (per mille), never above the reward and never below 1 token.
    bid_permille: int = 800
    max_concurrent_jobs: int = 1
    # Open bids one key may hold at once (bids do not hold a key to one job; the agent's time check does).
    max_open_bids: int = 8
    # Also drive workers registered through the API (keystore keys), not only the node's own key.
    keystore_workers: bool = True
    # Standing offer (issue 8): the price asked per job assigned at submission, and how many blocks ahead the
    # offer stands (renewed when fewer than half remain; capped by the chain's max_window).
    offer_price: int = 20
    offer_blocks: int = 20
    # This node's caps per job (issue 14): the longest run it takes (ms; 0: any the chain allows) and the most
    # memory one run may use (MB; 0: the machine's). Longer or bigger jobs are not bid on, standing offers name
    # the time cap, and every run (a drawn verifier or referee duty too) runs under both caps.
    max_job_time_ms: int = 0
    max_job_memory_mb: int = 0
    # Compute-pool slots kept for verifier and referee duties, which the ledger draws and slashes when missed: the
    # node's own jobs never use them (at most pool_size - 1 are kept, so a one-slot pool has no duty lane).
    duty_slots: int = 1


@dataclass
class NodeConfig:
    """Everything a node needs besides its home's keys and genesis."""

    moniker: str = "dacn-node"
    p2p_listen: str = "0.0.0.0:4001"
    api_listen: str | None = "127.0.0.1:5000"
    bootstrap: list[str] = field(default_factory=list)
    # consensus timeouts (ms): see ledger.consensus.ConsensusConfig
    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    timeout_commit_ms: int = 1000
    rebroadcast_ms: int = 2000
    # block sync: how often to compare heights with peers even when consensus does not say we are behind
    sync_interval_ms: int = 2000
    snapshot_every: int = 100
    # state snapshots kept in the store, newest first (0: every one, an archive node)
    keep_snapshots: int = 3
    # blocks kept below the head (0: every one, an archive node, with keep_snapshots = 0). Older blocks are
    # deleted at each snapshot, never one a kept snapshot replays from, so the store holds at most
    # max(keep_blocks, (keep_snapshots - 1) * snapshot_every) + snapshot_every blocks. 10,000 is hours of
    # blocks at 0.5-1 s each: a peer that was offline that long still catches up by block sync (a later one
    # state-syncs). The offences already punished are in the state, so no number of blocks is needed for them.
    keep_blocks: int = 10_000
    # a node whose store is empty starts at a peer's verified snapshot instead of replaying from genesis,
    # waiting this long for its first peer (bootstrap.sync.snapshots)
    state_sync: bool = True
    state_sync_wait_s: int = 10
    # A proposal holds at most the txs this node executes in this many ms (0: a third of timeout_propose_ms);
    # see bootstrap.consensus.budget
    block_exec_budget_ms: int = 0
    # Submitted txs are refused (a retryable 429) while the txs already waiting would take longer than this to
    # commit at the chain's recent rate, so an admitted tx commits within about this plus a block (0: no such
    # limit); see bootstrap.txs.governor.BacklogGate (whose DEFAULT_MAX_WAIT_S this is)
    max_backlog_s: float = 1.5
    mempool_max_txs: int = 50_000
    default_fee: int = 1
    # compute workers (child processes); with the default agent.duty_slots one of two is kept for duties
    pool_size: int = 2
    pool_preload: list[str] = field(default_factory=lambda: ["sklearn"])
    max_blob_bytes: int = 256 * 1024 * 1024
    # job data no live job needs: removed once unused this long (0: never, an archive node), and beyond this
    # many bytes in all the least recently used go first (0: no quota); swept every blob_sweep_interval_s
    blob_retention_s: int = 7 * 24 * 3600
    blob_store_max_bytes: int = 16 * 1024 * 1024 * 1024
    blob_sweep_interval_s: int = 600
    test_network: bool = False  # loopback timers for the p2p host (HostConfig.test())
    run_agent: bool = True  # start the worker agent (tests of consensus alone turn it off)
    agent: AgentConfig = field(default_factory=AgentConfig)

    @classmethod
    def test(cls, **overrides: Any) -> NodeConfig:
        """Loopback, any free port, short timeouts, no API, no compute pool: for in-process tests."""
        cfg = cls(
            moniker="test-node",
            p2p_listen="127.0.0.1:0",
            api_listen=None,
            timeout_propose_ms=600,
            timeout_propose_delta_ms=200,
            timeout_prevote_ms=300,
            timeout_prevote_delta_ms=100,
            timeout_precommit_ms=300,
            timeout_precommit_delta_ms=100,
            timeout_commit_ms=150,
            rebroadcast_ms=500,
            sync_interval_ms=300,
            snapshot_every=10,
            state_sync=False,  # in-process tests start nodes one by one and expect them to replay
            pool_size=0,
            test_network=True,
        )
        return replace(cfg, **overrides)

    @classmethod
    def devnet(cls, **overrides: Any) -> NodeConfig:
        """Local multi-process devnets: loopback, about one block a second, two compute workers (one for the
        node's own jobs, one kept for its verifier and referee duties)."""
        cfg = cls(
            p2p_listen="127.0.0.1:4001",
            timeout_propose_ms=1500,
            timeout_propose_delta_ms=300,
            timeout_prevote_ms=500,
            timeout_prevote_delta_ms=200,
            timeout_precommit_ms=500,
            timeout_precommit_delta_ms=200,
            timeout_commit_ms=700,
            rebroadcast_ms=1000,
            sync_interval_ms=1000,
            snapshot_every=20,  # a node that joins a devnet late finds a snapshot to start from within a minute
            test_network=True,
        )
        return replace(cfg, **overrides)

    # ------------------------------------------------------------------------------------------ derived

    def consensus(self) -> ConsensusConfig:
        return ConsensusConfig(
            timeout_propose_ms=self.timeout_propose_ms,
            timeout_propose_delta_ms=self.timeout_propose_delta_ms,
            timeout_prevote_ms=self.timeout_prevote_ms,
            timeout_prevote_delta_ms=self.timeout_prevote_delta_ms,
            timeout_precommit_ms=self.timeout_precommit_ms,
            timeout_precommit_delta_ms=self.timeout_precommit_delta_ms,
            timeout_commit_ms=self.timeout_commit_ms,
        )

    def p2p_multiaddr(self) -> str:
        host, port = parse_host_port(self.p2p_listen, "p2p_listen")
        kind = "ip6" if ":" in host else "ip4"
        return f"/{kind}/{host}/tcp/{port}"

    def api_host_port(self) -> tuple[str, int] | None:
        return None if self.api_listen is None else parse_host_port(self.api_listen, "api_listen")

    def host_config(self, peer_table_path: str | None = None) -> HostConfig:
        base = HostConfig.test() if self.test_network else HostConfig()
        return replace(
            base, listen_addrs=[self.p2p_multiaddr()], bootstrap=list(self.bootstrap), peer_table_path=peer_table_path
        )

    # ------------------------------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field."""
        if not isinstance(self.moniker, str) or not 0 < len(self.moniker) <= 64:
            raise ConfigError("moniker", self.moniker, "expected 1..64 characters")
        parse_host_port(self.p2p_listen, "p2p_listen")
        if self.api_listen is not None:
            parse_host_port(self.api_listen, "api_listen")
        if not isinstance(self.bootstrap, list):
            raise ConfigError("bootstrap", self.bootstrap, "expected a list of multiaddrs")
        for i, text in enumerate(self.bootstrap):
            try:
                ma = Multiaddr.parse(text)
            except Exception as exc:  # p2pnet raises its own typed errors; name the field here
                raise ConfigError(f"bootstrap[{i}]", text, str(exc)) from None
            if ma.peer_id is None:
                raise ConfigError(f"bootstrap[{i}]", text, "must end with /p2p/<peer id>")
        for name in ("rebroadcast_ms", "sync_interval_ms", "snapshot_every", "mempool_max_txs", "max_blob_bytes",
                     "blob_sweep_interval_s"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(name, value, "must be a positive integer")
        for name in ("default_fee", "pool_size", "block_exec_budget_ms", "blob_retention_s", "blob_store_max_bytes",
                     "keep_snapshots", "keep_blocks", "state_sync_wait_s"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigError(name, value, "must be a non-negative integer")
        if type(self.max_backlog_s) not in (int, float) or not 0 <= self.max_backlog_s <= 3600:
            raise ConfigError("max_backlog_s", self.max_backlog_s, "must be a number of seconds in 0..3600")
        if any(m not in ("sklearn", "torch") for m in self.pool_preload):
            raise ConfigError("pool_preload", self.pool_preload, "may name only 'sklearn' and 'torch'")
        try:
            self.consensus().validate()
        except Exception as exc:  # ledger's InvalidConfig names the field
            raise ConfigError(getattr(exc, "field_name", "consensus"), getattr(exc, "value", None), str(exc)) from None
        a = self.agent
        if type(a.bid_permille) is not int or not 1 <= a.bid_permille <= 1000:
            raise ConfigError("agent.bid_permille", a.bid_permille, "must be in 1..1000")
        if type(a.max_concurrent_jobs) is not int or a.max_concurrent_jobs < 1:
            raise ConfigError("agent.max_concurrent_jobs", a.max_concurrent_jobs, "must be at least 1")
        if type(a.max_open_bids) is not int or a.max_open_bids < 1:
            raise ConfigError("agent.max_open_bids", a.max_open_bids, "must be at least 1")
        if type(a.offer_price) is not int or not 0 <= a.offer_price < 2**63:
            raise ConfigError("agent.offer_price", a.offer_price, "must be a non-negative whole number of tokens")
        if type(a.offer_blocks) is not int or a.offer_blocks < 2:
            raise ConfigError("agent.offer_blocks", a.offer_blocks, "must be at least 2")
        if type(a.max_job_time_ms) is not int or not 0 <= a.max_job_time_ms <= 86_400_000:
            raise ConfigError("agent.max_job_time_ms", a.max_job_time_ms,
                              "must be 0 (any the chain allows) or a run time in ms of at most a day")
        if type(a.max_job_memory_mb) is not int or not 0 <= a.max_job_memory_mb <= 1 << 24:
            raise ConfigError("agent.max_job_memory_mb", a.max_job_memory_mb,
                              "must be 0 (the machine's memory) or a number of MB")
        if type(a.duty_slots) is not int or not 0 <= a.duty_slots <= 256:
            raise ConfigError("agent.duty_slots", a.duty_slots, "must be in 0..256")

    # ------------------------------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["api_listen"] is None:
            del d["api_listen"]
            d["api_enabled"] = False
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeConfig:
        """Defaults overridden by ``d``; unknown keys are errors, so typos do not pass silently."""
        if not isinstance(d, dict):
            raise ConfigError("$", d, "expected a table")
        d = dict(d)
        agent_d = d.pop("agent", {}) or {}
        api_enabled = d.pop("api_enabled", True)
        known = {f.name for f in fields(cls)} - {"agent"}
        for key in d:
            if key not in known:
                raise ConfigError(key, d[key], "unknown setting")
        agent_known = {f.name for f in fields(AgentConfig)}
        for key in agent_d:
            if key not in agent_known:
                raise ConfigError(f"agent.{key}", agent_d[key], "unknown setting")
        cfg = cls(**d, agent=AgentConfig(**agent_d))
        if api_enabled is False:
            cfg.api_listen = None
        cfg.validate()
        return cfg

    def save(self, home: Path) -> Path:
        path = Path(home) / CONFIG_FILE
        path.write_text(dump_toml(self.to_dict()))
        return path

    @classmethod
    def load(cls, home: Path) -> NodeConfig:
        path = Path(home) / CONFIG_FILE
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(str(path), None, "no config file (run `dacn init`)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), None, f"not valid TOML: {exc}") from None
        return cls.from_dict(doc)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError("toml", v, f"cannot write a {type(v).__name__} to TOML")


def dump_toml(d: dict[str, Any]) -> str:
    """A small TOML writer for flat tables with one level of sub-tables (all our config needs)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{k2} = {_toml_value(v2)}" for k2, v2 in v.items()]
    return "\n".join(lines) + "\n"
