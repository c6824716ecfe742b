"""Node homes and configs: init, testnets sharing one genesis, TOML round trip, validation errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bootstrap.errors import ConfigError, HomeError
from bootstrap.home import (
    FAUCET_KEY,
    NODE_KEY,
    Keystore,
    NodeConfig,
    WrongPassphrase,
    home_paths,
    init_home,
    load_home_genesis,
    load_node_identity,
    make_testnet,
    parse_host_port,
)
from ledger.genesis import genesis_state


def test_init_home_makes_a_one_validator_devnet(tmp_path: Path) -> None:
    info = init_home(tmp_path / "h", config=NodeConfig.test())
    paths = home_paths(info.home)
    assert paths["genesis"].exists() and paths["config"].exists()
    key_file = paths["keys"] / f"{NODE_KEY}.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    g = load_home_genesis(info.home)
    assert g.validators == [info.account]
    state = genesis_state(g)
    assert info.account in state.workers and state.workers[info.account].stake >= g.params.min_stake
    faucet = bytes(Keystore(paths["keys"]).load(FAUCET_KEY).verify_key)
    assert g.params.faucet == faucet and state.balance(faucet) > 10**6
    assert g.params.min_stake <= 100  # the seed's stake_amount of 150 must be enough
    assert load_node_identity(info.home).peer_id == info.peer_id
    with pytest.raises(HomeError):
        init_home(info.home)


def test_init_home_with_a_passphrase_encrypts_the_node_key(tmp_path: Path) -> None:
    info = init_home(tmp_path / "h", passphrase="secret words")
    doc = json.loads((home_paths(info.home)["keys"] / "node.json").read_text())
    assert doc["kdf"] == "argon2id" and "seed" not in doc
    assert load_node_identity(info.home, "secret words").peer_id == info.peer_id
    with pytest.raises(WrongPassphrase):
        load_node_identity(info.home, "wrong")


def test_testnet_homes_share_one_genesis_and_bootstrap_from_node0(tmp_path: Path) -> None:
    infos = make_testnet(6, tmp_path, validators=4, p2p_port=24001, api_port=25000)
    texts = {home_paths(i.home)["genesis"].read_text() for i in infos}
    assert len(texts) == 1
    g = load_home_genesis(infos[0].home)
    assert g.validators == [i.account for i in infos[:4]]
    assert {w.account for w in g.workers} == {i.account for i in infos}
    assert [i.validator for i in infos] == [True] * 4 + [False] * 2
    assert infos[0].config.bootstrap == []
    assert all(i.config.bootstrap == [infos[0].multiaddr()] for i in infos[1:])
    assert [i.config.api_listen for i in infos] == [f"127.0.0.1:{25000 + k}" for k in range(6)]
    faucets = {bytes(Keystore(home_paths(i.home)["keys"]).load(FAUCET_KEY).verify_key) for i in infos}
    assert faucets == {g.params.faucet}
    loaded = NodeConfig.load(infos[3].home)
    assert loaded.p2p_listen == "127.0.0.1:24004" and loaded.bootstrap == infos[3].config.bootstrap
    with pytest.raises(HomeError):
        make_testnet(0, tmp_path / "x")
    with pytest.raises(HomeError):
        make_testnet(3, tmp_path / "y", validators=4)


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    cfg = NodeConfig.test(api_listen="127.0.0.1:0", bootstrap=[], moniker='quote"d')
    cfg.agent.bid_permille = 650
    cfg.save(tmp_path)
    again = NodeConfig.load(tmp_path)
    assert again == cfg
    no_api = NodeConfig.test()
    no_api.save(tmp_path)
    assert NodeConfig.load(tmp_path).api_listen is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"p2p_listen": "nope"}, "p2p_listen"),
        ({"api_listen": "127.0.0.1:70000"}, "api_listen"),
        ({"bootstrap": ["/ip4/127.0.0.1/tcp/4001"]}, "bootstrap[0]"),
        ({"timeout_propose_ms": 0}, "timeout_propose_ms"),
        ({"rebroadcast_ms": 0}, "rebroadcast_ms"),
        ({"pool_preload": ["tensorflow"]}, "pool_preload"),
        ({"moniker": ""}, "moniker"),
    ],
)
def test_bad_config_values_name_their_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        NodeConfig.test(**changes).validate()
    assert err.value.field == field


def test_unknown_config_keys_are_errors(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('moniker = "x"\ntimeout_propse_ms = 5\n')
    with pytest.raises(ConfigError) as err:
        NodeConfig.load(tmp_path)
    assert err.value.field == "timeout_propse_ms"
    with pytest.raises(ConfigError):
        NodeConfig.load(tmp_path / "missing")
    assert parse_host_port("[::1]:80", "x") == ("::1", 80)


@pytest.mark.parametrize(("name", "value"), [("max_open_bids", 0), ("max_concurrent_jobs", 0), ("bid_permille", 1001)])
def test_bad_agent_values_name_their_field(name: str, value: int) -> None:
    cfg = NodeConfig.test()
    setattr(cfg.agent, name, value)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert err.value.field == f"agent.{name}"
