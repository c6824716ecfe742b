"""Helper process for the crash test: commit blocks of transfers to a store forever, printing each height.

Run as ``python -m tests.ledger.crash_writer DB_PATH``; the test kills it with SIGKILL at a random moment.
"""

from __future__ import annotations

import sys

from ledger.store import open_chain
from tests.ledger.chainkit import genesis4, next_block, users


def main(path: str) -> None:
    chain = open_chain(path, genesis4(), snapshot_every=3)
    wallets = users(8)
    for w in wallets:
        w.next_nonce = chain.state.nonce(w.account)
    i = 0
    while True:
        txs = []
        for _ in range(20):
            w = wallets[i % len(wallets)]
            txs.append(w.transfer(wallets[(i + 1) % len(wallets)].account, 1 + i % 7))
            i += 1
        block, commit = next_block(chain, txs)
        chain.commit_block(block, commit)
        print(chain.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
