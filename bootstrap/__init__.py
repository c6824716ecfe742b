"""The application: config, keys, genesis, the node that wires ledger, p2pnet and compute, the API and the CLI."""
