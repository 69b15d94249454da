"""The transport's exceptions: whose fault a failure is, and what a caller may do.

A peer's misbehaviour never escapes a server as an exception: the server logs
one line and closes that connection. These classes are what clients see, and
what handlers raise to refuse a request.
"""

from __future__ import annotations

__all__ = [
    "TransportError",
    "PeerGone",
    "ProtocolError",
    "WrongFingerprint",
    "Refused",
    "RemoteError",
]


class TransportError(Exception):
    """Base of every error the transport layer raises."""


class PeerGone(TransportError):
    """The connection failed or closed: refused, reset, timed out or broken.

    Retrying later, possibly elsewhere, is the usual answer.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(PeerGone):
    """The peer sent bytes that break the protocol (garbage, oversized frame,
    unknown tag, unexpected message); the connection is over."""


class WrongFingerprint(TransportError):
    """The server's key is not the one its address pins: never retry blindly."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"server key is {actual}, the address pins {expected}")
        self.expected = expected
        self.actual = actual


class Refused(TransportError):
    """Raised by a handler to refuse a request; the client raises it as RemoteError.

    ``code`` is a short machine-readable word (``"unknown_job"``), ``reason``
    one human line. Both travel to the peer, so never put secrets in them.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class RemoteError(TransportError):
    """The server refused a call or a transfer with ``code`` and ``reason``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
