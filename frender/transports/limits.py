"""The bounds every connection lives within: sizes, deadlines, counts."""

from __future__ import annotations

from attrs import field, frozen
from attrs.validators import gt

__all__ = ["Limits"]


@frozen(kw_only=True)
class Limits:
    """Safe defaults for an internet-facing server; clients use the same class.

    Deadlines are seconds. A file body's deadline grows with its size:
    ``message_deadline + size / min_file_rate``, so a slow-drip upload of a
    huge file cannot hold a connection forever.
    """

    max_frame: int = field(default=1 << 20, validator=gt(4))  # encoded RPC frame, bytes
    message_deadline: float = field(default=10.0, validator=gt(0))  # a whole frame, once its first byte came
    idle_timeout: float = field(default=300.0, validator=gt(0))  # no frame and no call in flight
    handshake_deadline: float = field(default=10.0, validator=gt(0))  # TCP+TLS+key proof+opening
    max_connections: int = field(default=1024, validator=gt(0))
    max_per_host: int = field(default=64, validator=gt(0))
    max_in_flight: int = field(default=32, validator=gt(0))  # concurrent calls per RPC session
    max_file_size: int = field(default=2 << 30, validator=gt(0))
    min_file_rate: float = field(default=64 * 1024, validator=gt(0))  # bytes per second
    chunk_size: int = field(default=1 << 20, validator=gt(0))  # file read/write/hash unit
