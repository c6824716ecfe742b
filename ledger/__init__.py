"""The ledger: transactions, accounts, staking, jobs, reputation, blocks and consensus, all pure.

Imports only the standard library, msgpack and PyNaCl. The one module that touches disk is the sqlite store.
"""
