"""Small records shared by the rule modules: the block context a tx runs in, events, and receipts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.types import AccountId, Height, Tokens


@dataclass(frozen=True, slots=True)
class BlockContext:
    """Where a tx or block hook runs: the height, the block time, a seed (the parent block hash) and the proposer.

    ``seed`` drives every random draw (verifier, referee), so all validators draw the same workers.
    ``proposer`` receives the fees.
    """

    height: Height
    time_ms: int
    seed: bytes
    proposer: AccountId


@dataclass(frozen=True, slots=True)
class Event:
    """Something the ledger did that a client may want to see: a ``kind`` and its fields (bytes stay bytes)."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: bytes as hex."""
        return {"kind": self.kind, **{k: _jsonable(v) for k, v in self.fields.items()}}


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one applied tx. ``error`` is set for a tx that is in its block but failed: its nonce was
    used and its fee paid, and nothing else it asked for happened (see ``ledger.rules.apply_block_tx``)."""

    tx_id: bytes
    kind: str
    sender: AccountId
    nonce: int
    fee: Tokens
    height: Height
    events: tuple[Event, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id.hex(), "kind": self.kind, "sender": self.sender.hex(), "nonce": self.nonce,
            "fee": self.fee, "height": self.height, "events": [e.to_dict() for e in self.events],
            "ok": self.ok, "error": self.error,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v
