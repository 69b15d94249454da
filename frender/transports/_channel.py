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
Rule 6: sends that queue up while another is on the wire leave together:
        the next sender writes every waiting frame in one ``send_all`` (one
        TLS record, one syscall) in the order they were queued. Each caller
        still returns only once its own bytes are sent, or raises PeerGone.
Rule 7: a small send (a frame, not a file chunk) on a settled TLS stream that
        nobody else is sending on is encrypted and written to the socket
        directly, without trio's send machinery and without yielding; only
        what the socket does not take at once goes through trio, in line with
        the TLS stream's own sends. trio's SSLStream spends about 25 µs of
        Python on each send, more than the encryption and the system call.
Rule 8: frames are read the same way: decrypted from what the TLS object
        holds, else from a direct non-blocking read of the socket, waiting
        for it to be readable only when it has nothing (one scheduler round
        trip per wait, where trio's receive_some takes two or three). File
        bodies (``receive_into``) still use trio's receive_some.
Rule 9: Rules 7 and 8 go through ``_fastpath``, probed once the handshake is
        done (``handshake``): where the probe finds anything missing, or
        FRENDER_NO_FAST_PATH=1 is set, ``fast`` is None and every send and
        read takes trio's public API, with the same framing and deadlines.
"""

from __future__ import annotations

import ssl
import struct
from contextlib import contextmanager
from typing import Iterator, Literal, TypeVar, overload

import trio

from frender.transports._fastpath import FastPath, probe
from frender.transports.errors import PeerGone, ProtocolError
from frender.transports.limits import Limits
from frender.transports.messages import decode_body, encode_frame

_PREFIX = struct.Struct(">I")
_RECEIVE = 64 * 1024
M = TypeVar("M")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


_BROKEN_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


class _BrokenAsPeerGone:
    # A plain class: entered twice per RPC, a generator context manager cost more than the send.
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if kind is not None and issubclass(kind, _BROKEN_ERRORS):
            cause = exc.__cause__ or exc  # type: ignore[union-attr]
            raise PeerGone(f"connection broken: {type(cause).__name__}: {cause}"[:300]) from None
        return False


_BROKEN_AS_PEER_GONE = _BrokenAsPeerGone()


def broken_as_peer_gone() -> _BrokenAsPeerGone:
    """Translate the stream's own failures into PeerGone."""
    return _BROKEN_AS_PEER_GONE


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
        self._filling = _Batch()  # sends waiting for the lock (Rule 6)
        self.fast: FastPath | None = None  # set by handshake (Rule 9)

    async def handshake(self) -> None:
        """The TLS handshake, then the probe for the fast path (Rule 9)."""
        tls = self.stream
        assert isinstance(tls, trio.SSLStream)
        with broken_as_peer_gone():
            await tls.do_handshake()
        self.fast = probe(tls)

    def take_buffered(self, size: int) -> bytes:
        """Up to ``size`` raw bytes already read past the last frame (a file body's start), taken out of the buffer."""
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken

    async def receive_some(self, max_bytes: int) -> bytes | bytearray:
        """Up to ``max_bytes`` raw bytes (b"" at end of stream), buffered bytes first."""
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data
        with broken_as_peer_gone():
            return await self.stream.receive_some(max_bytes)

    async def receive_into(self, view: memoryview) -> int:
        """Fill the start of ``view`` with raw bytes; their count, 0 at end of stream.

        For file bodies. trio's SSLStream hands over one TLS record (16 KiB) per
        receive_some, with a scheduler round trip each. After one awaited
        receive, every further record already in the TLS object's incoming
        buffer is decrypted here directly into ``view``, without yielding.
        No await happens meanwhile, so no other task can touch the TLS object,
        and any bytes it has to answer (a TLS 1.3 key update) stay in its
        outgoing buffer for the stream's next operation to send, as usual.
        """
        if self._buffer:
            count = min(len(view), len(self._buffer))
            view[:count] = self._buffer[:count]
            del self._buffer[:count]
            return count
        with broken_as_peer_gone():
            data = await self.stream.receive_some(len(view))
        count = len(data)
        view[:count] = data
        fast = self.fast
        if count and fast is not None:
            with broken_as_peer_gone():
                # Nothing more without the network, or the end (reported next time), ends the loop.
                while count < len(view) and (more := fast.decrypt_held_into(view[count:])):
                    count += more
        return count

    async def receive_message(self) -> object | None:
        """The next decoded message, or None if the peer closed between frames."""
        body = await self._next_body()
        return None if body is None else decode_body(body)

    async def receive_bodies(self) -> list[bytes]:
        """The bodies of every whole frame that has arrived (at least one); [] if the peer closed between frames.

        For RPC sessions, so a burst of calls is read, and answered, in one go:
        after the one awaited receive, the frames already here (in the TLS
        object's incoming buffer too, see ``receive_into``) are taken without
        yielding. Bodies are returned undecoded, so a bad one fails only when
        its caller decodes it, after the ones before it. A frame over
        ``max_frame`` (Rule 1) raises ProtocolError once the frames before it
        have been returned.
        """
        body = await self._next_body()
        if body is None:
            return []
        bodies = [body]
        self._drain_tls()
        try:
            while (body := self._buffered_frame()) is not None:
                bodies.append(body)
        except ProtocolError:
            pass  # the oversized prefix stays buffered: the next call raises before reading on
        return bodies

    async def _next_body(self) -> bytes | None:
        """The next frame's body (Rules 1 and 2), or None if the peer closed between frames."""
        if not self._buffer:
            first = await self._receive_frame_bytes(_RECEIVE)
            if not first:
                return None
            self._buffer += first
        body = self._buffered_frame()
        if body is not None:  # the whole frame is here already: no deadline to keep
            return body
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
        return body

    async def _receive_frame_bytes(self, max_bytes: int) -> bytes | bytearray:
        """Up to ``max_bytes`` of frames (b"" at the end of the stream), read as Rule 8 says."""
        fast = self.fast
        with broken_as_peer_gone():
            data = None if fast is None else await fast.read_now_or_wait(max_bytes)
            return await self.stream.receive_some(max_bytes) if data is None else data

    def _drain_tls(self) -> None:
        """Move the records the TLS object already holds into the buffer, without yielding.

        trio's SSLStream returns one TLS record per receive_some, with a
        scheduler round trip each; records already received are decrypted
        here instead (the reasoning of ``receive_into``). Bounded by what the
        last socket read brought in.
        """
        fast = self.fast
        if fast is None:
            return
        with broken_as_peer_gone():
            # Nothing more without the network, or the end (reported next time), ends the loop.
            while more := fast.decrypt_held(_RECEIVE):
                self._buffer += more

    def _buffered_frame(self) -> bytes | None:
        """The next frame's body if it is wholly buffered (Rule 1 checked), else None."""
        if len(self._buffer) < _PREFIX.size:
            return None
        (length,) = _PREFIX.unpack_from(self._buffer)
        if length > self.limits.max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.limits.max_frame}-byte limit")
        end = _PREFIX.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_PREFIX.size : end])
        del self._buffer[:end]
        return body

    @overload
    async def expect(self, kind: type[M]) -> M: ...

    @overload
    async def expect(self, kind: tuple[type[A], type[B]]) -> A | B: ...

    @overload
    async def expect(self, kind: tuple[type[A], type[B], type[C]]) -> A | B | C: ...

    async def expect(self, kind: type | tuple[type, ...]) -> object:
        """The next message, which must be of ``kind`` (a class or a tuple of them); ProtocolError otherwise."""
        message = await self.receive_message()
        if message is None:
            raise PeerGone("peer closed the connection")
        if isinstance(message, kind):
            return message
        raise ProtocolError(f"expected {_names(kind)}, got {type(message).__name__}")

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            data = await self._receive_frame_bytes(max(size - len(self._buffer), _RECEIVE))
            if not data:
                raise PeerGone(f"peer closed the connection inside a frame ({len(self._buffer)} of {size} bytes)")
            self._buffer += data

    async def send_message(self, message: object) -> None:
        """Send one frame whole, or PeerGone if the peer does not take it in time."""
        await self.send_bytes(encode_frame(message), self.limits.message_deadline)

    async def send_bytes(self, data: bytes | memoryview, deadline: float) -> None:
        """Send raw bytes (a frame or a file chunk) under Rules 3 and 6."""
        batch = self._filling
        batch.parts.append(data)
        try:
            # A free lock is taken without a scheduler round trip; the send below yields anyway.
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            try:
                await self._send_lock.acquire()
            except BaseException:
                # Cancelled while waiting, as before: these bytes are not sent.
                if not batch.taken:
                    batch.parts.remove(data)
                raise
        try:
            if not batch.taken:  # nobody sent this batch yet: send it now
                batch.taken = True
                self._filling = _Batch()
                parts = batch.parts
                whole = parts[0] if len(parts) == 1 else b"".join(parts)
                fast = self.fast
                try:
                    left = fast.write_now(whole) if fast is not None and len(whole) <= _RECEIVE else None
                except PeerGone as exc:
                    batch.failure, left = exc.reason, b""
                if left != b"":
                    # One scope: shielded from the caller (Rule 3), cancelled by its own deadline.
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + deadline) as scope:
                        try:
                            with _BROKEN_AS_PEER_GONE:
                                if left is None or fast is None:
                                    await self.stream.send_all(whole)
                                else:
                                    await fast.send_rest(left)
                        except PeerGone as exc:
                            batch.failure = exc.reason
                    if scope.cancelled_caught:
                        batch.failure = f"peer did not take {len(whole)} bytes within {deadline:g} s"
        finally:
            self._send_lock.release()
        if batch.failure is not None:
            raise PeerGone(batch.failure)


class _Batch:
    """Frames that leave in one write (Rule 6), and why that write failed, if it did."""

    __slots__ = ("parts", "taken", "failure")

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.taken = False  # a sender has taken these parts to the wire
        self.failure: str | None = None


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
