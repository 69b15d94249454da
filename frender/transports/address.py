"""A server's address as others are given it: host, port and the pinned key fingerprint.

``frender://127.0.0.1:7000#sha256:<64 hex>`` (IPv6 as ``frender://[::1]:7000#...``).
The fingerprint is part of the address, so whoever hands out an address also
says which key must answer there; a client refuses any other.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from attrs import frozen

__all__ = ["Address", "FINGERPRINT_PATTERN"]

FINGERPRINT_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|[0-9A-Fa-f:.]+")


@frozen
class Address:
    """Where a server listens and which key it must present."""

    host: str
    port: int
    fingerprint: str

    def __attrs_post_init__(self) -> None:
        if not _HOST.fullmatch(self.host):
            raise ValueError(f"bad host {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not in 1..65535")
        if not FINGERPRINT_PATTERN.fullmatch(self.fingerprint):
            raise ValueError(f"fingerprint {self.fingerprint!r} is not 'sha256:' and 64 lowercase hex digits")

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``frender://host:port#sha256:...``; ValueError says what is wrong."""
        parts = urlsplit(text.strip())
        if parts.scheme != "frender":
            raise ValueError(f"{text!r}: an address starts with 'frender://'")
        if parts.path or parts.query or parts.username or parts.password:
            raise ValueError(f"{text!r}: an address is frender://host:port#fingerprint, nothing more")
        if not parts.hostname:
            raise ValueError(f"{text!r}: no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{text!r}: the port is not a number in 0..65535") from None
        if port is None:
            raise ValueError(f"{text!r}: no port")
        if not parts.fragment:
            raise ValueError(f"{text!r}: no key fingerprint; append '#sha256:...' as the server printed it")
        return cls(parts.hostname, port, parts.fragment)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"frender://{host}:{self.port}#{self.fingerprint}"
