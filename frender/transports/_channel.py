"""A framed, deadline-bounded message stream over any trio stream (TLS in practice).

Rule 1: the length prefix is checked against ``max_frame`` before anything is
        buffered for the body, so a 4 GiB claim costs nothing.
Rule 2: waiting for a frame's first byte is not bounded here (idle time is the
        caller's business); from that byte on the whole frame must arrive
        within ``message_deadline``, so dripping one byte a second is dropped.
Rule 3: a send is never interrupted by its caller's cancellation: a TLS stream
        cancelled mid-record is unusable for everyone sharing it. Sends are
        shielded instead and bounded by ``message_deadline``.
Rule 4: every failure of the stream below becomes PeerGone here, at the edge.
Rule 5: every message is length-delimited, so TLS streams are opened with
        ``https_compatible=True``: a close without TLS close_notify reads as
        end of stream, and a truncation is still caught by the framing (a
        frame or file body cut short is PeerGone, never a shorter message).
"""

from __future__ import annotations

import ssl
import struct
from contextlib import contextmanager
from typing import Iterator, TypeVar

import trio

from frender.transports.errors import PeerGone, ProtocolError
from frender.transports.limits import Limits
from frender.transports.messages import decode_body, encode_frame

_PREFIX = struct.Struct(">I")
_RECEIVE = 64 * 1024
M = TypeVar("M")


@contextmanager
def broken_as_peer_gone() -> Iterator[None]:
    """Translate the stream's own failures into PeerGone."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
        cause = exc.__cause__ or exc
        raise PeerGone(f"connection broken: {type(cause).__name__}: {cause}"[:300]) from None


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise a nursery's lone exception as itself, not wrapped in a group.

    For nurseries whose helper tasks never fail on their own, so a group can
    only hold the body's exception (or a helper's crash, raised as is too).
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Channel:
    """One connection's framed messages plus the raw bytes of a file body."""

    def __init__(self, stream: trio.abc.Stream, limits: Limits) -> None:
        self.stream = stream
        self.limits = limits
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` raw bytes (b"" at end of stream), buffered bytes first."""
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data
        with broken_as_peer_gone():
            return await self.stream.receive_some(max_bytes)

    async def receive_message(self) -> object | None:
        """The next decoded message, or None if the peer closed between frames."""
        if not self._buffer:
            with broken_as_peer_gone():
                first = await self.stream.receive_some(_RECEIVE)
            if not first:
                return None
            self._buffer += first
        with trio.move_on_after(self.limits.message_deadline) as scope:
            await self._fill(_PREFIX.size)
            (length,) = _PREFIX.unpack_from(self._buffer)
            if length > self.limits.max_frame:
                raise ProtocolError(f"frame of {length} bytes exceeds the {self.limits.max_frame}-byte limit")
            end = _PREFIX.size + length
            await self._fill(end)
        if scope.cancelled_caught:
            raise PeerGone(f"message not complete within {self.limits.message_deadline:g} s")
        body = bytes(self._buffer[_PREFIX.size : end])
        del self._buffer[:end]
        return decode_body(body)

    async def expect(self, kind: type[M] | tuple[type, ...]) -> M:
        """The next message, which must be of ``kind``; ProtocolError otherwise."""
        message = await self.receive_message()
        if message is None:
            raise PeerGone("peer closed the connection")
        if isinstance(message, kind):
            return message  # type: ignore[return-value]
        raise ProtocolError(f"expected {_names(kind)}, got {type(message).__name__}")

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            with broken_as_peer_gone():
                data = await self.stream.receive_some(max(size - len(self._buffer), _RECEIVE))
            if not data:
                raise PeerGone(f"peer closed the connection inside a frame ({len(self._buffer)} of {size} bytes)")
            self._buffer += data

    async def send_message(self, message: object) -> None:
        """Send one frame whole, or PeerGone if the peer does not take it in time."""
        await self.send_bytes(encode_frame(message), self.limits.message_deadline)

    async def send_bytes(self, data: bytes, deadline: float) -> None:
        """Send raw bytes (a frame or a file chunk) under Rule 3."""
        async with self._send_lock:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(deadline) as scope, broken_as_peer_gone():
                    await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise PeerGone(f"peer did not take {len(data)} bytes within {deadline:g} s")


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
