"""Every error p2pnet raises, under one root, :class:`P2PError`.

Errors that a remote peer caused (bad bytes, a wrong identity, a protocol breach) derive from
:class:`RemoteProtocolError`; errors in how the local code called us derive from :class:`LocalProtocolError`,
the split h11 makes, so a caller can tell "the peer misbehaved" from "I misused the API".
"""

from __future__ import annotations


class P2PError(Exception):
    """Root of every error raised by p2pnet."""


class LocalProtocolError(P2PError):
    """The local caller misused the API (bad argument, closed connection, unknown peer)."""


class ListenError(LocalProtocolError):
    """A listening address could not be bound (taken, not local, no permission); the node cannot serve."""

    def __init__(self, what: str, address: str, reason: str) -> None:
        super().__init__(f"cannot listen for {what} on {address}: {reason}")
        self.what, self.address, self.reason = what, address, reason


class RemoteProtocolError(P2PError):
    """The remote peer sent something invalid; the connection it came on should be closed."""


# --- identity and addresses -------------------------------------------------------------------------------


class IdentityError(P2PError):
    """A key file or a key is unusable."""


class KeyFileError(IdentityError):
    """A key file is malformed or readable by others; carries the path and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"key file {path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidPeerId(P2PError):
    """A peer id (text or bytes) could not be decoded; carries the offending value and the reason."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"invalid peer id {value!r}: {reason}")
        self.value = value
        self.reason = reason


class InvalidMultiaddr(P2PError):
    """A multiaddr could not be parsed; carries the text and the reason."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid multiaddr {text!r}: {reason}")
        self.text = text
        self.reason = reason


# --- secure channel -----------------------------------------------------------------------------------------


class HandshakeError(RemoteProtocolError):
    """The Noise handshake failed (bad message, bad signature, timeout)."""


class HandshakeTimeout(HandshakeError):
    """The remote did not finish the handshake in time."""


class PeerIdMismatch(HandshakeError):
    """The remote proved an identity other than the one dialed."""

    def __init__(self, expected: object, actual: object) -> None:
        super().__init__(f"dialed {expected} but the remote proved {actual}")
        self.expected = expected
        self.actual = actual


class DecryptError(RemoteProtocolError):
    """A Noise transport message failed authentication or was malformed."""


# --- framing and messages ------------------------------------------------------------------------------------


class FrameError(RemoteProtocolError):
    """A frame could not be read."""


class FrameTooLarge(FrameError):
    """A frame's declared length is over the cap; carries both."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit}")
        self.length = length
        self.limit = limit


class TruncatedFrame(FrameError):
    """The stream ended inside a frame; carries how many bytes were pending."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"stream ended with {pending} bytes of an unfinished frame")
        self.pending = pending


class ProtocolError(RemoteProtocolError):
    """A decoded frame is not a valid message of our wire protocol; carries the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- connections and requests ---------------------------------------------------------------------------------


class BadRequest(P2PError):
    """A request handler refused the remote's payload as malformed. The remote gets an error response naming
    why; the host logs no traceback (the fault is the remote's, not a bug here)."""


class ConnectionClosed(P2PError):
    """The connection is closed (locally or by the remote); carries the reason when known."""

    def __init__(self, reason: str = "closed") -> None:
        super().__init__(reason)
        self.reason = reason


class DialError(P2PError):
    """A dial failed (refused, banned, limit reached, no address); carries the target and the reason."""

    def __init__(self, target: object, reason: str) -> None:
        super().__init__(f"dial {target}: {reason}")
        self.target = target
        self.reason = reason


class RequestTimeout(P2PError):
    """A request got no response in time; carries the protocol and the timeout."""

    def __init__(self, protocol: str, timeout: float) -> None:
        super().__init__(f"request on {protocol} timed out after {timeout} s")
        self.protocol = protocol
        self.timeout = timeout


class RemoteError(P2PError):
    """The remote's handler failed or refused the request; carries the protocol and its message."""

    def __init__(self, protocol: str, message: str) -> None:
        super().__init__(f"remote error on {protocol}: {message}")
        self.protocol = protocol
        self.message = message


class PeerBusy(RemoteError):
    """The remote refused the request because this peer is over its request budget there; ``retry_after_s`` is
    its hint (asking again sooner counts against us)."""

    def __init__(self, protocol: str, message: str) -> None:
        super().__init__(protocol, message)
        try:
            self.retry_after_s = float(message.rsplit("retry after ", 1)[1].split()[0])
        except (IndexError, ValueError):
            self.retry_after_s = 1.0


class BlobError(P2PError):
    """A blob could not be fetched or did not match its digest."""


class BlobDigestMismatch(BlobError):
    """The fetched bytes hash to another digest than the one asked for."""

    def __init__(self, expected: bytes, actual: bytes) -> None:
        super().__init__(f"blob digest mismatch: expected {expected.hex()}, got {actual.hex()}")
        self.expected = expected
        self.actual = actual


class ConfigError(LocalProtocolError):
    """A HostConfig field is out of range; carries the field and its value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"config {field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class MessageTooLarge(LocalProtocolError):
    """A message we were asked to send encodes to more than the frame cap; carries both sizes."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"message of {length} bytes exceeds the frame limit of {limit}")
        self.length = length
        self.limit = limit
