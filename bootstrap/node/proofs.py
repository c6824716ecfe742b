"""State proofs for light clients: the node's half of ``GET /proof/<section>/<id>`` (``ledger.lightclient``).

The state after block ``h`` is fixed by the ``state_root`` in block ``h + 1``'s header, which exists only once
``h + 1`` commits. So a proof is cut from the committed state at once (the tree's path, the header, the record),
and the answer then waits for the next block, up to a timeout, to attach its header and commit; a chain that
stalls gets a 429 with ``Retry-After`` rather than a proof nobody could check. Cutting a proof costs one tree path
(about log2 n hashes) and holds a few kilobytes while it waits.
"""

from __future__ import annotations

from typing import Any

import trio

from bootstrap.errors import NodeBusy
from ledger.encoding import pack
from ledger.lightclient import KEY_BYTES, StateProof
from ledger.state import prove_record, record_value, state_header


class ProofDesk:
    """Cuts state proofs from the node's committed state and anchors them to the next block."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._next_block = trio.Event()

    def on_commit(self) -> None:
        """A block committed: wake every proof waiting for its anchor."""
        self._next_block.set()
        self._next_block = trio.Event()

    async def prove(self, section: str, raw_key: bytes, *, timeout: float) -> StateProof:
        """A proof of the record ``raw_key`` of ``section`` (present or absent) at the current height."""
        if section not in KEY_BYTES or len(raw_key) != KEY_BYTES[section]:
            raise ValueError(f"a {section} key is {KEY_BYTES.get(section)} bytes")
        node = self.node
        state = node.state
        height = node.height
        key: Any = (raw_key[:32], raw_key[32:]) if section == "allowance" else raw_key
        record, tree_root, proof = prove_record(state, section, key)
        packed = None if record is None else pack(record_value(section, key, record))
        header = state_header(state)
        with trio.move_on_after(timeout):
            while node.height < height + 1:
                await self._next_block.wait()
        got = node.chain.get_blocks(height + 1, height + 1)
        if not got:
            raise NodeBusy(f"block {height + 1}, which fixes the state root of height {height}, has not "
                           f"committed within {timeout:g} s", retry_after_s=2.0)
        block, commit = got[0]
        return StateProof(section, raw_key, packed, header, tree_root, proof, block.header, commit)
