"""A node's home on disk: its config (``config.toml``), its layout, genesis and devnet testnets, and its keystore.

Everything a node reads at start and keeps between runs lives under one directory, down to what a user declared
for a worker key; this room knows where each file is and how it is written (keys 0600, optionally sealed with a
passphrase). It starts nothing.
"""

from bootstrap.home.config import CONFIG_FILE, AgentConfig, NodeConfig, dump_toml, parse_host_port
from bootstrap.home.declared import DECLARED_FILE, read_declared, write_declared
from bootstrap.home.keystore import Keystore, KeystoreError, WrongPassphrase, check_key_name, fsync_dir, write_private
from bootstrap.home.layout import (
    DEVNET_PARAMS,
    FAUCET_BALANCE,
    FAUCET_KEY,
    GENESIS_FILE,
    NODE_BALANCE,
    NODE_KEY,
    NODE_STAKE,
    HomeInfo,
    devnet_genesis,
    home_paths,
    init_home,
    load_home_genesis,
    load_node_identity,
    make_testnet,
    write_genesis,
)

__all__ = [
    "CONFIG_FILE",
    "DECLARED_FILE",
    "DEVNET_PARAMS",
    "FAUCET_BALANCE",
    "FAUCET_KEY",
    "GENESIS_FILE",
    "NODE_BALANCE",
    "NODE_KEY",
    "NODE_STAKE",
    "AgentConfig",
    "HomeInfo",
    "Keystore",
    "KeystoreError",
    "NodeConfig",
    "WrongPassphrase",
    "check_key_name",
    "devnet_genesis",
    "dump_toml",
    "fsync_dir",
    "home_paths",
    "init_home",
    "load_home_genesis",
    "load_node_identity",
    "make_testnet",
    "parse_host_port",
    "read_declared",
    "write_declared",
    "write_genesis",
    "write_private"
]
