"""Genesis: JSON and TOML files load to the same chain; every malformed field is named in the error."""

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidGenesis
from ledger.genesis import Genesis, genesis_state, load_genesis
from ledger.params import Params
from ledger.state import state_root, total_supply
from tests.ledger.factories import account, make_genesis

TOML = f"""
chain_id = "dacn-devnet"
genesis_time = 1767225600000
validators = ["{account("v0").hex()}", "{account("v1").hex()}"]

[[allocations]]
account = "{account("alice").hex()}"
balance = 1000000

[[workers]]
account = "{account("w1").hex()}"
stake = 5000
device_kind = "gpu"
device_name = "NVIDIA H100"
memory_mb = 81920
capacity = 1000

[[workers]]                  # the validators' bonds
account = "{account("v0").hex()}"
stake = 2000
device_kind = "cpu"

[[workers]]
account = "{account("v1").hex()}"
stake = 2000
device_kind = "cpu"

[params]
min_stake = 2000
faucet = "{account("alice").hex()}"
"""


def test_toml_and_json_load_to_the_same_genesis_and_state(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(TOML)
    g = load_genesis(tmp_path / "g.toml")
    assert g.chain_id == "dacn-devnet"
    assert g.validators == [account("v0"), account("v1")]
    assert g.allocations == {account("alice"): 1_000_000}
    assert g.params.min_stake == 2000 and g.params.faucet == account("alice")
    (tmp_path / "g.json").write_text(json.dumps(g.to_dict()))
    g2 = load_genesis(tmp_path / "g.json")
    assert g2 == g
    s = genesis_state(g)
    assert state_root(s) == state_root(genesis_state(g2))
    assert total_supply(s) == 1_009_000
    w = s.workers[account("w1")]
    assert (w.stake, w.device_kind, w.memory_mb, w.reputation) == (5000, "gpu", 81920, Params().initial_reputation)
    assert s.accounts[account("w1")].balance == 0


def _doc(**changes: Any) -> dict[str, Any]:
    d = make_genesis(workers=["w1"]).to_dict()
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"chain_id": None}, "chain_id"),
        ({"chain_id": "has space"}, "chain_id"),
        ({"genesis_time": -1}, "genesis_time"),
        ({"validators": []}, "validators"),
        ({"validators": ["zz"]}, "validators[0]"),
        ({"validators": [account("a").hex(), account("a").hex()]}, "validators"),
        ({"allocations": [{"account": account("a").hex(), "balance": -5}]}, "allocations[0].balance"),
        ({"allocations": [{"account": account("a").hex()[:-2], "balance": 5}]}, "allocations[0].account"),
        ({"allocations": [{"account": account("a").hex(), "balance": 1}] * 2}, "allocations[1].account"),
        ({"allocations": [{"account": account("a").hex(), "balance": 1.5}]}, "allocations[0].balance"),
        ({"workers": [{"account": account("w").hex(), "stake": 1, "device_kind": "cpu"}]}, "workers[0].stake"),
        ({"workers": [{"account": account("w").hex(), "stake": 5000, "device_kind": "tpu"}]},
         "workers[0].device_kind"),
        ({"workers": [{"account": account("w").hex(), "stake": 5000}]}, "workers[0].device_kind"),
        ({"params": {"min_stake": -1}}, "params.min_stake"),
        ({"params": {"slash_permille": 1001}}, "params.slash_permille"),
        ({"params": {"no_such_thing": 1}}, "params.no_such_thing"),
        ({"params": {"default_bid_window": 0}}, "params.default_bid_window"),
        ({"params": {"faucet": "00"}}, "params.faucet"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_genesis_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidGenesis) as exc:
        Genesis.from_dict(_doc(**changes))
    assert exc.value.field == field


def test_unreadable_or_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidGenesis, match="cannot read"):
        load_genesis(tmp_path / "missing.json")
    (tmp_path / "bad.toml").write_text("chain_id = ")
    with pytest.raises(InvalidGenesis, match="cannot parse"):
        load_genesis(tmp_path / "bad.toml")
    (tmp_path / "g.yaml").write_text("x")
    with pytest.raises(InvalidGenesis, match="format"):
        load_genesis(tmp_path / "g.yaml")


def test_params_round_trip_through_dict_and_list() -> None:
    p = Params.from_dict({"min_fee": 3, "faucet": account("f").hex()})
    assert Params.from_dict(p.to_dict()) == p
    assert Params.from_list(p.to_list()) == p
