"""Genesis: the chain id, start time, initial balances, validators, pre-registered workers and parameters.

A genesis document is a JSON or TOML file (or a dict). Accounts are written as 64 hex characters (the raw
Ed25519 public key); the peer-ID text form belongs to p2pnet and never appears here. Example (TOML)::

    chain_id = "dacn-devnet"
    genesis_time = 1767225600000          # unix milliseconds
    validators = ["<64 hex>"]             # each also listed under workers (its bond, see below)

    [[allocations]]
    account = "<64 hex>"
    balance = 1000000

    [[workers]]                           # optional; stake is minted as bonded stake, not taken from a balance
    account = "<64 hex>"
    stake = 5000
    device_kind = "gpu"                   # "cpu" or "gpu"
    device_name = "NVIDIA H100"
    memory_mb = 81920
    capacity = 1000

    [params]                              # optional overrides of ledger.params.Params
    min_stake = 1000

Every validator must have stake at risk: it is refused unless it is also a pre-registered worker (with a stake of
at least ``min_stake``, as every worker here). The worker bond is the validator's bond: an equivocation slash
takes from it (``ledger.staking.slash_equivocation``) and the validator may never unbond below ``min_stake``.
The bond is a worker record rather than a separate validator bond because a node's one key is its validator,
its account and its worker (a devnet registers every node as a worker), and the worker record already has the
unbonding queue and the slashing the evidence rule needs.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InvalidGenesis
from ledger.params import Params, _account_from_hex
from ledger.state import Account, State, Worker
from ledger.types import AccountId, Tokens

__all__ = ["DEVICE_KINDS", "Genesis", "GenesisWorker", "Params", "genesis_state", "load_genesis"]

DEVICE_KINDS = ("cpu", "gpu")
_CHAIN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_AMOUNT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class GenesisWorker:
    """A worker registered from block 0, with stake minted straight into its bond."""

    account: AccountId
    stake: Tokens
    device_kind: str
    device_name: str = ""
    memory_mb: int = 0
    capacity: int = 0


def _int(value: Any, fld: str, *, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= _MAX_AMOUNT:
        raise InvalidGenesis(fld, f"expected an integer >= {minimum}, got {value!r}")
    return value


_ALLOCATION_KEYS = frozenset({"account", "balance"})


def _allocation(i: int, entry: Any) -> tuple[AccountId, Tokens]:
    """The account and balance of ``allocations[i]``; ``InvalidGenesis`` naming the field that is wrong."""
    if not isinstance(entry, dict) or set(entry) != _ALLOCATION_KEYS:
        raise InvalidGenesis(f"allocations[{i}]", "expected exactly the keys account and balance")
    return (_account_from_hex(entry["account"], f"allocations[{i}].account"),
            _int(entry["balance"], f"allocations[{i}].balance"))


def _str(value: Any, fld: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value.encode()) > max_len:
        raise InvalidGenesis(fld, f"expected a string of at most {max_len} bytes")
    return value


@dataclass(frozen=True, slots=True)
class Genesis:
    """A validated genesis document."""

    chain_id: str
    genesis_time: int
    allocations: dict[AccountId, Tokens]
    validators: list[AccountId]
    workers: list[GenesisWorker] = field(default_factory=list)
    params: Params = field(default_factory=Params)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genesis:
        """Validate a parsed document; every problem raises ``InvalidGenesis`` naming the field."""
        if not isinstance(d, dict):
            raise InvalidGenesis("$", "expected a table/object at the top level")
        unknown = set(d) - {"chain_id", "genesis_time", "allocations", "validators", "workers", "params"}
        if unknown:
            raise InvalidGenesis(sorted(unknown)[0], "unknown field")
        if "chain_id" not in d:
            raise InvalidGenesis("chain_id", "missing")
        chain_id = d["chain_id"]
        if not isinstance(chain_id, str) or not _CHAIN_ID_RE.match(chain_id):
            raise InvalidGenesis("chain_id", "expected 1-64 characters from [A-Za-z0-9._-]")
        genesis_time = _int(d.get("genesis_time", 0), "genesis_time")
        params = Params.from_dict(d.get("params", {}) or {})

        allocations: dict[AccountId, Tokens] = {}
        raw_alloc = d.get("allocations", [])
        if isinstance(raw_alloc, dict):  # also accept {"<hex>": balance}
            raw_alloc = [{"account": k, "balance": v} for k, v in raw_alloc.items()]
        if not isinstance(raw_alloc, list):
            raise InvalidGenesis("allocations", "expected a list of {account, balance}")
        for i, entry in enumerate(raw_alloc):
            # The usual entry is checked inline (a devnet genesis can hold a million); anything else goes through
            # the checks that name the field.
            acct = None
            if isinstance(entry, dict) and entry.keys() == _ALLOCATION_KEYS:
                hex_id, balance = entry["account"], entry["balance"]
                if type(hex_id) is str and len(hex_id) == 64 and type(balance) is int and 0 <= balance <= _MAX_AMOUNT:
                    try:
                        acct = bytes.fromhex(hex_id)
                    except ValueError:
                        acct = None
            if acct is None or len(acct) != 32:
                acct, balance = _allocation(i, entry)
            if acct in allocations:
                raise InvalidGenesis(f"allocations[{i}].account", "duplicate account")
            allocations[acct] = balance

        raw_val = d.get("validators")
        if not isinstance(raw_val, list) or not raw_val:
            raise InvalidGenesis("validators", "expected a non-empty list of account ids")
        validators = [_account_from_hex(v, f"validators[{i}]") for i, v in enumerate(raw_val)]
        if len(set(validators)) != len(validators):
            raise InvalidGenesis("validators", "duplicate validator")

        workers: list[GenesisWorker] = []
        raw_workers = d.get("workers", [])
        if not isinstance(raw_workers, list):
            raise InvalidGenesis("workers", "expected a list")
        seen: set[bytes] = set()
        for i, w in enumerate(raw_workers):
            f = f"workers[{i}]"
            if not isinstance(w, dict):
                raise InvalidGenesis(f, "expected a table/object")
            extra = set(w) - {"account", "stake", "device_kind", "device_name", "memory_mb", "capacity"}
            if extra:
                raise InvalidGenesis(f"{f}.{sorted(extra)[0]}", "unknown field")
            for required in ("account", "stake", "device_kind"):
                if required not in w:
                    raise InvalidGenesis(f"{f}.{required}", "missing")
            acct = _account_from_hex(w["account"], f"{f}.account")
            if acct in seen:
                raise InvalidGenesis(f"{f}.account", "duplicate worker")
            seen.add(acct)
            stake = _int(w["stake"], f"{f}.stake")
            if stake < params.min_stake:
                whose = f" (the bond of validator {acct.hex()})" if acct in validators else ""
                raise InvalidGenesis(f"{f}.stake", f"below min_stake={params.min_stake}{whose}")
            kind = w["device_kind"]
            if kind not in DEVICE_KINDS:
                raise InvalidGenesis(f"{f}.device_kind", f"expected one of {DEVICE_KINDS}")
            workers.append(GenesisWorker(
                acct, stake, kind, _str(w.get("device_name", ""), f"{f}.device_name", 128),
                _int(w.get("memory_mb", 0), f"{f}.memory_mb"), _int(w.get("capacity", 0), f"{f}.capacity"),
            ))
        # Every validator has stake an equivocation slash can reach (see the module docstring).
        for i, v in enumerate(validators):
            if v not in seen:
                raise InvalidGenesis(
                    f"validators[{i}]",
                    f"validator {v.hex()} has no bonded stake: list it under workers with stake >= "
                    f"min_stake={params.min_stake}",
                )
        total = sum(allocations.values()) + sum(w.stake for w in workers)
        if total > _MAX_AMOUNT:
            raise InvalidGenesis("allocations", "total supply exceeds 2**63-1")
        return cls(chain_id, genesis_time, allocations, validators, workers, params)

    def to_dict(self) -> dict[str, Any]:
        """The document form (hex account ids), which ``from_dict`` reads back to an equal ``Genesis``."""
        return {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "allocations": [{"account": a.hex(), "balance": b} for a, b in self.allocations.items()],
            "validators": [v.hex() for v in self.validators],
            "workers": [
                {"account": w.account.hex(), "stake": w.stake, "device_kind": w.device_kind,
                 "device_name": w.device_name, "memory_mb": w.memory_mb, "capacity": w.capacity}
                for w in self.workers
            ],
            "params": self.params.to_dict(),
        }


def load_genesis(path: str | Path) -> Genesis:
    """Read a ``.json`` or ``.toml`` genesis file; syntax errors become ``InvalidGenesis("$", ...)``."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise InvalidGenesis("$", f"cannot read {p}: {exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(text)
        elif suffix == ".toml":
            doc = tomllib.loads(text.decode())
        else:
            raise InvalidGenesis("$", f"unknown genesis format {suffix!r} (use .json or .toml)")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidGenesis("$", f"cannot parse {p.name}: {exc}") from None
    return Genesis.from_dict(doc)


def genesis_state(genesis: Genesis) -> State:
    """The state at height 0: allocated balances, pre-registered workers, no jobs."""
    state = State(genesis.chain_id, genesis.params, genesis.validators, genesis.genesis_time)
    for acct, balance in genesis.allocations.items():
        state.accounts[acct] = Account(balance, 0)
    for w in genesis.workers:
        state.workers[w.account] = Worker(
            w.stake, genesis.params.initial_reputation, w.device_kind, w.device_name, w.memory_mb, w.capacity, 0
        )
        state.accounts.setdefault(w.account, Account())
    return state  # its state tree is built in full when its root is first asked for
