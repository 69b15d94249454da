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


try:  # trio's SSLStream states, for Rule 7; without them every send goes through send_all
    from trio._ssl import _State

    _OK, _BROKEN = _State.OK, _State.BROKEN
except ImportError:  # pragma: no cover - a trio that reorganised its internals
    _OK = _BROKEN = None

_BROKEN_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


class _BrokenAsPeerGone:
    # A plain class: entered twice per RPC, a generator context manager cost more than the send.
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
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

    async def receive_some(self, max_bytes: int) -> bytes:
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
        tls = getattr(self.stream, "_ssl_object", None)
        if count and isinstance(tls, ssl.SSLObject):
            with broken_as_peer_gone():
                while count < len(view):
                    try:
                        more = tls.read(len(view) - count, view[count:])
                    except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        break  # nothing more without the network; an end is reported next time
                    if not more:
                        break  # end of stream: the next receive reports it
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

    async def _receive_frame_bytes(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of frames (b"" at the end of the stream), read as Rule 8 says."""
        with broken_as_peer_gone():
            data = await _read_now_or_wait(self.stream, max_bytes)
            if data is None:
                data = await self.stream.receive_some(max_bytes)
        return data

    def _drain_tls(self) -> None:
        """Move the records the TLS object already holds into the buffer, without yielding.

        trio's SSLStream returns one TLS record per receive_some, with a
        scheduler round trip each; records already received are decrypted
        here instead (the reasoning of ``receive_into``). Bounded by what the
        last socket read brought in.
        """
        tls = getattr(self.stream, "_ssl_object", None)
        if not isinstance(tls, ssl.SSLObject):
            return
        with broken_as_peer_gone():
            while True:
                try:
                    more = tls.read(_RECEIVE)
                except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    return  # nothing more without the network; an end is reported next time
                if not more:
                    return
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
            data = await self._receive_frame_bytes(max(size - len(self._buffer), _RECEIVE))
            if not data:
                raise PeerGone(f"peer closed the connection inside a frame ({len(self._buffer)} of {size} bytes)")
            self._buffer += data

    async def send_message(self, message: object) -> None:
        """Send one frame whole, or PeerGone if the peer does not take it in time."""
        await self.send_bytes(encode_frame(message), self.limits.message_deadline)

    async def send_bytes(self, data: bytes, deadline: float) -> None:
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
                try:
                    left = _write_now(self.stream, whole) if len(whole) <= _RECEIVE else None
                except PeerGone as exc:
                    batch.failure, left = exc.reason, b""
                if left != b"":
                    # One scope: shielded from the caller (Rule 3), cancelled by its own deadline.
                    with trio.CancelScope(shield=True, deadline=trio.current_time() + deadline) as scope:
                        try:
                            with _BROKEN_AS_PEER_GONE:
                                if left is None:
                                    await self.stream.send_all(whole)
                                else:
                                    await _send_rest(self.stream, left)
                        except PeerGone as exc:
                            batch.failure = exc.reason
                    if scope.cancelled_caught:
                        batch.failure = f"peer did not take {len(whole)} bytes within {deadline:g} s"
        finally:
            self._send_lock.release()
        if batch.failure is not None:
            raise PeerGone(batch.failure)


def _write_now(stream: trio.abc.Stream, data: bytes) -> bytes | None:
    """Encrypt ``data`` and hand it to the socket without yielding (Rule 7); the ciphertext the socket did not take.

    None, with nothing written, where the stream is not a settled TLS stream
    over a socket, or another task is sending on it: then ``send_all`` does
    it all. Raises PeerGone if the stream fails meanwhile (it is then broken).
    """
    if type(stream) is not trio.SSLStream or _OK is None:
        return None
    tls, outgoing = stream._ssl_object, stream._outgoing
    if (
        stream._state is not _OK
        or not stream._handshook.done
        or stream._delayed_outgoing is not None
        or stream._inner_send_lock.locked()
        or outgoing.pending
        or type(stream.transport_stream) is not trio.SocketStream
    ):
        return None
    sock = stream.transport_stream.socket._sock
    try:
        tls.write(data)
        out = outgoing.read()
        try:
            sent = sock.send(out)
        except BlockingIOError:
            sent = 0
    except (ssl.SSLError, OSError) as exc:
        stream._state = _BROKEN  # ciphertext may be half sent: nothing else can follow it
        raise PeerGone(f"connection broken: {type(exc).__name__}: {exc}"[:300]) from None
    return out[sent:]


async def _read_now_or_wait(stream: trio.abc.Stream, max_bytes: int) -> bytes | None:
    """Decrypted bytes read straight from the socket (Rule 8), b"" at the end; None where ``receive_some`` must read.

    Holds the TLS stream's own receive lock meanwhile, so trio's machinery
    never reads the same socket at the same time.
    """
    if type(stream) is not trio.SSLStream or _OK is None:
        return None
    receiving = stream._inner_recv_lock
    if (
        stream._state is not _OK
        or not stream._handshook.done
        or receiving.locked()
        or type(stream.transport_stream) is not trio.SocketStream
    ):
        return None
    tls, incoming, outgoing = stream._ssl_object, stream._incoming, stream._outgoing
    sock = stream.transport_stream.socket
    await trio.lowlevel.checkpoint_if_cancelled()
    receiving.acquire_nowait()
    try:
        while True:
            try:
                data = tls.read(max_bytes)
            except ssl.SSLWantReadError:
                data = None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # https_compatible (Rule 5): an end without close_notify is the end
            except ssl.SSLError:
                stream._state = _BROKEN
                raise
            if outgoing.pending:  # TLS's own answer (a key update): out before anything else
                await _send_rest(stream, outgoing.read())
            if data is not None:
                return data
            try:
                raw = sock._sock.recv(_RECEIVE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            stream._inner_recv_count += 1
            if raw:
                incoming.write(raw)
            else:
                incoming.write_eof()
    finally:
        receiving.release()


async def _send_rest(stream: trio.SSLStream, rest: bytes) -> None:
    """The ciphertext the socket did not take at once, sent as trio's SSLStream sends its own."""
    async with stream._inner_send_lock:  # in line with the stream's own sends, as its reads do
        try:
            await stream.transport_stream.send_all(rest)
        except BaseException:
            stream._state = _BROKEN  # an unknown part of a record went out
            raise


class _Batch:
    """Frames that leave in one write (Rule 6), and why that write failed, if it did."""

    __slots__ = ("parts", "taken", "failure")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.taken = False  # a sender has taken these parts to the wire
        self.failure: str | None = None


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
