"""What one request body may hold, per endpoint, and the check that runs before any route parses it.

A valid 29 MiB JSON object of small keys once held a validator's loop for 20–28 s (parsed and validated there,
every unknown key an error in a 250 MiB answer). So every write endpoint has a byte cap sized to what it needs,
and a JSON body above :data:`THREAD_ABOVE` bytes is parsed on a worker thread and walked against structural limits
(nesting depth, keys per object, items per array, values in all, string length) before the route sees it; a body
that breaks one is a 413 (too many bytes) or 400 (too deep, too many keys…) naming the limit. What passes is small
enough that FastAPI's own parse and validation on the loop take milliseconds. Large datasets travel as binary
uploads (``POST /data``), parsed on a thread too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024 * 1024
THREAD_ABOVE = 16 * KIB
"""Bodies up to this size are checked on the loop (microseconds); larger ones on a worker thread."""


@dataclass(frozen=True)
class BodyLimit:
    """Bounds on one endpoint's body. ``json=False``: a binary upload, only ``max_bytes`` applies."""

    max_bytes: int = 64 * KIB
    max_depth: int = 6
    max_keys: int = 64
    max_items: int = 4096
    max_values: int = 20_000
    max_string: int = 64 * KIB
    max_containers: int = 256
    """Brackets and braces in the raw bytes (counted at C speed before parsing: ``json.loads`` of 400,000 tiny
    lists held the GIL half a second); an upper bound on the arrays and objects the body holds."""
    max_colons: int = 1024
    """Colons in the raw bytes: an upper bound on the keys of all objects (a CSV string has none: no numeric
    cell has one)."""
    json: bool = True


DEFAULT_LIMIT = BodyLimit()
UPLOAD_BYTES = 64 * MIB

ENDPOINT_LIMITS: dict[str, BodyLimit] = {
    # One signed tx as hex (a tx is at most 8 KiB encoded; hex doubles it).
    "/tx": BodyLimit(max_bytes=64 * KIB, max_string=4 * 8192, max_containers=4, max_colons=8),
    # A batch of up to 4,096 signed txs.
    "/txs": BodyLimit(max_bytes=8 * MIB, max_depth=3, max_keys=4, max_items=4096, max_values=4100,
                      max_string=4 * 8192, max_containers=4, max_colons=8),
    # Inline rows and CSV text stay small (parsing 1 MiB of numbers takes ~60 ms, on whichever thread holds the
    # GIL); bigger datasets go to POST /data and are named by digest.
    "/job/submit": BodyLimit(max_bytes=1 * MIB, max_depth=6, max_keys=64, max_items=100_000, max_values=200_000,
                             max_string=1 * MIB, max_containers=10_000, max_colons=2048),
    "/data": BodyLimit(max_bytes=UPLOAD_BYTES, json=False),
}


def limit_for(path: str) -> BodyLimit:
    """The limits for a write to ``path`` (every other write gets :data:`DEFAULT_LIMIT`)."""
    return ENDPOINT_LIMITS.get(path, DEFAULT_LIMIT)


class BodyShapeError(Exception):
    """A body that breaks a structural limit; ``status`` is 413 for size, 400 for the rest."""

    def __init__(self, status: int, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def check_json_body(body: bytes, limit: BodyLimit) -> None:
    """Parse ``body`` and walk it against ``limit``; raise :class:`BodyShapeError` naming the first limit broken.

    Bad JSON is left to the route (whose error names the position): this check only bounds what parses."""
    if len(body) > limit.max_bytes:
        raise BodyShapeError(413, f"request body of {len(body)} bytes exceeds {limit.max_bytes} for this endpoint",
                             {"kind": "too_large", "limit": limit.max_bytes})
    if not body.strip():
        return
    containers = body.count(b"[") + body.count(b"{")
    if containers > limit.max_containers:
        raise _too("containers", limit.max_containers, containers)
    colons = body.count(b":")
    if colons > limit.max_colons:
        raise _too("keys_in_all", limit.max_colons, colons)
    try:
        doc = json.loads(body)
    except RecursionError:  # nested past the parser's own stack, far beyond any endpoint's depth
        raise _too("depth", limit.max_depth) from None
    except ValueError:
        return  # not JSON: the route's own 400 names where it breaks
    values = 0
    # (value, depth, the field it sits in): items of a list share the list's field name, so naming costs nothing
    stack: list[tuple[Any, int, str]] = [(doc, 1, "body")]
    while stack:
        node, depth, field = stack.pop()
        values += 1
        if values > limit.max_values:
            raise _too("values", limit.max_values)
        if isinstance(node, dict):
            if depth > limit.max_depth:
                raise _too("depth", limit.max_depth, field=field)
            if len(node) > limit.max_keys:
                raise _too("keys", limit.max_keys, len(node), field)
            for key, value in node.items():
                if len(key) > 256:
                    raise _too("key_length", 256, len(key), field)
                stack.append((value, depth + 1, key if field == "body" else f"{field}.{key}"))
        elif isinstance(node, list):
            if depth > limit.max_depth:
                raise _too("depth", limit.max_depth, field=field)
            if len(node) > limit.max_items:
                raise _too("items", limit.max_items, len(node), field)
            stack.extend((value, depth + 1, field) for value in node)
        elif isinstance(node, str):
            if len(node) > limit.max_string:
                raise _too("string_length", limit.max_string, len(node), field)
        elif isinstance(node, int) and not isinstance(node, bool) and node.bit_length() > 256:
            raise _too("number_digits", 77, field=field)


def _too(what: str, limit: int, got: int | None = None, field: str = "body") -> BodyShapeError:
    words = {"depth": "nesting depth", "keys": "keys in one object", "items": "items in one array",
             "values": "values in all", "string_length": "characters in one string",
             "key_length": "characters in one key", "number_digits": "digits in one integer",
             "containers": "arrays and objects", "keys_in_all": "keys (colons) in all"}[what]
    said = f" ({got})" if got is not None else ""
    where = "request body" if field == "body" else field
    return BodyShapeError(400, f"{where:.120} has too many {words}{said}: this endpoint allows {limit}",
                          {"kind": "body_shape", "field": field[:120], "limit_on": what, "limit": limit,
                           "got": got})

