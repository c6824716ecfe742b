"""Signed transactions applied per second on one core, beside the raw PyNaCl verify rate in the same run.

Run: ``.venv/bin/python -m bench.ledger_apply [--txs 20000] [--rounds 5] [--accounts 1000]``.

Each round measures, on the same pre-signed transfers (about 150 bytes each):
  * ``verify``: raw ``nacl.signing.VerifyKey.verify`` over each tx's signing message (keys built in advance);
  * ``apply``: ``apply_tx(state, stx, ctx)`` with the signature check, in blocks of 1,000 txs with
    ``begin_block``/``end_block`` and a ``state_root`` per block;
  * ``decode+apply``: the same from the wire bytes (``decode_signed_tx`` then ``apply_tx``);
  * ``apply (verified)``: ``apply_tx(..., verified=True)``, the state transition alone.
Rounds alternate the measurements so machine noise hits all of them alike; the table gives medians and the
ratio to the verify rate computed within each round. Goal: apply >= 60% of verify.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from nacl.signing import VerifyKey

from ledger.context import BlockContext
from ledger.crypto import blake2b256, signing_key_from_seed
from ledger.genesis import Genesis, genesis_state
from ledger.rules import apply_tx, begin_block, end_block
from ledger.state import State, state_root
from ledger.tx import SignedTx, Transfer, decode_signed_tx, make_tx, signing_message

CHAIN_ID = "dacn-bench"
BLOCK_TXS = 1_000


def build(n_accounts: int, n_txs: int, seed: int) -> tuple[Genesis, list[SignedTx]]:
    rng = random.Random(seed)
    keys = [signing_key_from_seed(b"bench%d" % i) for i in range(n_accounts)]
    accounts = [bytes(k.verify_key) for k in keys]
    genesis = Genesis.from_dict({
        "chain_id": CHAIN_ID,
        "allocations": [{"account": a.hex(), "balance": 10**12} for a in accounts],
        "validators": [accounts[0].hex()],
        "workers": [{"account": accounts[0].hex(), "stake": 1_000, "device_kind": "cpu"}],  # the validator's bond
    })
    nonces = [0] * n_accounts
    txs = []
    for _ in range(n_txs):
        i = rng.randrange(n_accounts)
        j = rng.randrange(n_accounts)
        txs.append(make_tx(Transfer(accounts[j], rng.randrange(1, 1000)), keys[i], CHAIN_ID, nonce=nonces[i], fee=1))
        nonces[i] += 1
    return genesis, txs


def ctx(height: int, proposer: bytes) -> BlockContext:
    return BlockContext(height, height * 1000, blake2b256(b"%d" % height), proposer)


def time_verify(txs: list[SignedTx]) -> float:
    items = [(VerifyKey(t.sender), signing_message(CHAIN_ID, t.body_bytes), t.signature) for t in txs]
    t0 = time.perf_counter()
    for vk, msg, sig in items:
        vk.verify(msg, sig)
    return len(items) / (time.perf_counter() - t0)


def time_apply(genesis: Genesis, txs: list[SignedTx], *, verified: bool = False,
               from_bytes: bool = False) -> tuple[float, State]:
    state = genesis_state(genesis)
    proposer = genesis.validators[0]
    state_root(state)
    items: list = [t.encode() for t in txs] if from_bytes else txs
    t0 = time.perf_counter()
    for height, start in enumerate(range(0, len(items), BLOCK_TXS), start=1):
        c = ctx(height, proposer)
        begin_block(state, c)
        for item in items[start : start + BLOCK_TXS]:
            stx = decode_signed_tx(item) if from_bytes else item
            apply_tx(state, stx, c, verified=verified)
        end_block(state, c)
        state_root(state)
    return len(items) / (time.perf_counter() - t0), state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=1_000)
    args = parser.parse_args()

    genesis, txs = build(args.accounts, args.txs, seed=1)
    roots = set()
    rows: dict[str, list[float]] = {"verify": [], "apply": [], "decode+apply": [], "apply (verified)": []}
    ratios: dict[str, list[float]] = {k: [] for k in rows}
    runners: dict[str, Callable[[], float]] = {
        "verify": lambda: time_verify(txs),
        "apply": lambda: _apply(genesis, txs, roots),
        "decode+apply": lambda: _apply(genesis, txs, roots, from_bytes=True),
        "apply (verified)": lambda: _apply(genesis, txs, roots, verified=True),
    }
    for _ in range(args.rounds):
        rates = {name: run() for name, run in runners.items()}
        for name, rate in rates.items():
            rows[name].append(rate)
            ratios[name].append(rate / rates["verify"])
    assert len(roots) == 1, "the same txs must always reach the same state root"

    print(f"{args.txs} signed transfers among {args.accounts} accounts, blocks of {BLOCK_TXS}, "
          f"{args.rounds} rounds, one core\n")
    print("| measurement | median tx/s | min | max | median ratio to verify |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} | {max(values):,.0f} | "
              f"{statistics.median(ratios[name]):.0%} |")


def _apply(genesis: Genesis, txs: list[SignedTx], roots: set[bytes], **kw: bool) -> float:
    rate, state = time_apply(genesis, txs, **kw)
    roots.add(state_root(state))
    return rate


if __name__ == "__main__":
    main()
