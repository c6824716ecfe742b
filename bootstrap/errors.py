"""The node's errors: one root, :class:`NodeError`, so the API and the CLI can turn any of them into a clear
message (a 4xx for bad input, never a crash). Errors raised by the libraries (``ledger``, ``compute``,
``p2pnet``) pass through unchanged: they already carry their fields."""

from __future__ import annotations


class NodeError(Exception):
    """Root of the errors raised by ``bootstrap``'s node layer."""


class ConfigError(NodeError, ValueError):
    """A node configuration value is missing or out of range."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"config {field}={value!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason


class HomeError(NodeError):
    """A node home directory is missing, incomplete or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class UnknownAccount(NodeError, LookupError):
    """A name is neither a local key, a peer id nor 64 hex characters of an account."""

    def __init__(self, name: str, reason: str = "not a local key name, a peer id or a 64-hex account") -> None:
        super().__init__(f"unknown account {name!r}: {reason}")
        self.name, self.reason = name, reason


class BlobNotFound(NodeError, LookupError):
    """No local copy and no peer could provide the blob."""

    def __init__(self, digest: bytes, tried: int, reason: str = "") -> None:
        super().__init__(f"blob {digest.hex()[:16]}… not found (asked {tried} peers){': ' + reason if reason else ''}")
        self.digest, self.tried, self.reason = digest, tried, reason


class HeightNotKept(NodeError, LookupError):
    """The state at a past height cannot be rebuilt on this node: no snapshot at or below it is kept."""


class BlobTooLarge(NodeError, ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"blob of {size} bytes exceeds the limit {limit}")
        self.size, self.limit = size, limit


class NodeBusy(NodeError):
    """Back-pressure, not a verdict: the node spent its share of time on admitting submitted txs; send the same
    bytes again after ``retry_after_s``."""

    def __init__(self, what: str, retry_after_s: float) -> None:
        super().__init__(f"node busy: {what}; retry after {retry_after_s:g} s")
        self.what, self.retry_after_s = what, retry_after_s


class NodeNotRunning(NodeError):
    """A write was attempted before ``Node.run`` started (or after it stopped)."""


class WireError(NodeError, ValueError):
    """Untrusted gossip or request bytes did not decode; ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason
