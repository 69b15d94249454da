"""The transport fast path: the one module that reaches into trio's TLS stream and socket.

trio's SSLStream spends about 25 µs of Python on each send and takes a
scheduler round trip per 16 KiB TLS record. Frames (``_channel`` Rules 7 and
8) and file bodies (``_files`` Rule 4) go faster by driving the stream's own
``ssl.SSLObject``, memory BIOs and socket directly. Those are trio's private
attributes, with no promise that they stay, so only this module names them.

Rule 1: ``probe(stream)`` runs once the TLS handshake is done. It checks
        every private name in PRIVATE_NAMES (presence and type) and returns
        a FastPath, or None (reason logged) where anything is missing, the
        stream is not TLS over a socket, or FRENDER_NO_FAST_PATH=1 is set.
        None means every send and read goes through trio's public API.
Rule 2: a FastPath uses only what the probe saw. Each method either does the
        fast thing or says it cannot (None, or no Wire), and its caller then
        takes trio's public path: nothing is half done.
Rule 3: while worker threads drive the TLS object (``hold``) the stream has
        a single owner: the stream's own send and receive conflict
        detectors and inner locks are held, so a trio task that touches the
        stream meanwhile fails with BusyResourceError instead of corrupting
        it, and this module's direct paths refuse the same way.
Rule 4: the stream is marked broken (trio's own ``BROKEN`` state) wherever
        a TLS failure or a half-sent record leaves it unusable, as trio does.
Rule 5: each FastPath counts what it did in ``taken`` (all of them in
        TAKEN), so tests prove the fast path is taken, not only allowed.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import ssl
from collections import Counter
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Final, Iterator, TypeVar, cast

import trio
from attrs import frozen

from frender.transports.errors import PeerGone

if TYPE_CHECKING:
    from trio._ssl import _State

__all__ = ["SWITCH", "PRIVATE_NAMES", "TAKEN", "FastPath", "Wire", "check", "decrypt_into", "hold", "probe"]

log = logging.getLogger(__name__)

SWITCH: Final = "FRENDER_NO_FAST_PATH"
"""Set to 1 to turn the fast path off: every connection then uses trio's public API only."""

# What this module uses of trio, by role. The probe checks each; a test checks
# that no other private name appears in this file, nor these names elsewhere.
STREAM_NAMES: Final = {
    "state": "_state",
    "handshook": "_handshook",
    "tls": "_ssl_object",
    "incoming": "_incoming",
    "outgoing": "_outgoing",
    "delayed": "_delayed_outgoing",
    "send_lock": "_inner_send_lock",
    "recv_lock": "_inner_recv_lock",
    "recv_count": "_inner_recv_count",
    "send_detector": "_outer_send_conflict_detector",
    "recv_detector": "_outer_recv_conflict_detector",
}
SOCKET_NAME: Final = "_sock"  # the stdlib socket inside trio's socket
STATE_MODULE: Final = "trio._ssl"  # where SSLStream's states are defined
STATE_ENUM: Final = "_State"
PRIVATE_NAMES: Final = frozenset({*STREAM_NAMES.values(), SOCKET_NAME, "_ssl", STATE_ENUM})

TAKEN: Counter[str] = Counter()
"""What every FastPath of this process did: ``write``, ``read``, ``drain`` and ``body``."""

_T = TypeVar("_T")
_RECEIVE = 64 * 1024
_TOLD: set[str] = set()  # reasons already logged, so a missing name is logged once, not per connection


class _Missing(Exception):
    """A private part of trio that the fast path needs is not there (or not what it was)."""


class FastPath:
    """Direct use of one handshaken trio.SSLStream over a socket; every part was checked by ``probe``."""

    __slots__ = (
        "stream",
        "tls",
        "incoming",
        "outgoing",
        "socket",
        "raw_socket",
        "send_lock",
        "recv_lock",
        "detectors",
        "ok",
        "broken",
        "held",
        "taken",
    )

    def __init__(
        self,
        stream: trio.SSLStream[trio.SocketStream],
        *,
        tls: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        raw_socket: socket.socket,
        send_lock: trio.StrictFIFOLock,
        recv_lock: trio.Lock,
        detectors: tuple[AbstractContextManager[None], AbstractContextManager[None]],
        ok: _State,
        broken: _State,
    ) -> None:
        self.stream = stream
        self.tls = tls
        self.incoming = incoming
        self.outgoing = outgoing
        self.socket = stream.transport_stream.socket
        self.raw_socket = raw_socket
        self.send_lock = send_lock
        self.recv_lock = recv_lock
        self.detectors = detectors
        self.ok = ok
        self.broken = broken
        self.held = False  # a worker thread owns the stream (Rule 3)
        self.taken: Counter[str] = Counter()

    def _count(self, kind: str) -> None:
        self.taken[kind] += 1
        TAKEN[kind] += 1

    def _refuse_if_held(self) -> None:
        if self.held:
            raise trio.BusyResourceError("a worker thread is driving this TLS stream")

    def _mark_broken(self) -> None:
        self.stream._state = self.broken

    def write_now(self, data: bytes | memoryview) -> bytes | None:
        """Encrypt ``data`` and hand it to the socket without yielding; the ciphertext the socket did not take.

        None, with nothing written, where trio must send: the stream is not
        settled (TLS 1.3 session tickets held back, broken or closed) or
        another task is sending on it. PeerGone if the stream fails meanwhile
        (it is then broken: Rule 4).
        """
        self._refuse_if_held()
        stream = self.stream
        if stream._state is not self.ok or stream._delayed_outgoing is not None or self.send_lock.locked() or self.outgoing.pending:
            return None
        try:
            self.tls.write(data)
            out = self.outgoing.read()
            try:
                sent = self.raw_socket.send(out)
            except BlockingIOError:
                sent = 0
        except (ssl.SSLError, OSError) as exc:
            self._mark_broken()  # ciphertext may be half sent: nothing else can follow it
            raise PeerGone(f"connection broken: {type(exc).__name__}: {exc}"[:300]) from None
        self._count("write")
        return out[sent:]

    async def send_rest(self, rest: bytes) -> None:
        """Ciphertext the socket did not take at once, sent as trio's SSLStream sends its own."""
        async with self.send_lock:  # in line with the stream's own sends, as its reads are
            try:
                await self.stream.transport_stream.send_all(rest)
            except BaseException:
                self._mark_broken()  # an unknown part of a record went out
                raise

    async def read_now_or_wait(self, max_bytes: int) -> bytes | None:
        """Decrypted bytes read straight from the socket, b"" at the end; None where trio's ``receive_some`` must read.

        Holds the stream's own receive lock meanwhile, so trio's machinery
        never reads the same socket at the same time. An end without TLS
        close_notify reads as the end (streams are ``https_compatible``).
        """
        self._refuse_if_held()
        stream, receiving = self.stream, self.recv_lock
        if stream._state is not self.ok or receiving.locked():
            return None
        tls, incoming, outgoing = self.tls, self.incoming, self.outgoing
        await trio.lowlevel.checkpoint_if_cancelled()
        receiving.acquire_nowait()
        try:
            while True:
                try:
                    data = tls.read(max_bytes)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
                except ssl.SSLError:
                    self._mark_broken()
                    raise
                if outgoing.pending:  # TLS's own answer (a key update): out before anything else
                    await self.send_rest(outgoing.read())
                if data is not None:
                    self._count("read")
                    return data
                try:
                    raw = self.raw_socket.recv(_RECEIVE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.socket)
                    continue
                stream._inner_recv_count += 1  # trio's other readers then look again before reading
                if raw:
                    incoming.write(raw)
                else:
                    incoming.write_eof()
        finally:
            receiving.release()

    def decrypt_held(self, max_bytes: int) -> bytes:
        """Bytes the TLS object can decrypt from what it already received, without the network; b"" if none.

        An end of stream also gives b"": the next read reports it.
        """
        self._refuse_if_held()
        try:
            data = self.tls.read(max_bytes)
        except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""
        except ssl.SSLError:
            self._mark_broken()
            raise
        if data:
            self._count("drain")
        return data

    def decrypt_held_into(self, view: memoryview) -> int:
        """``decrypt_held`` into ``view``: the count, 0 if nothing is held."""
        self._refuse_if_held()
        try:
            count = decrypt_into(self.tls, view)
        except (ssl.SSLWantReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return 0
        except ssl.SSLError:
            self._mark_broken()
            raise
        if count:
            self._count("drain")
        return count

    @contextmanager
    def hold(self) -> Iterator[Wire | None]:
        """The stream for worker threads to drive (Rule 3): its Wire, or None where trio is busy with it.

        For the calling task's whole transfer, waits included. Nothing else
        may use the stream meanwhile: trio's own sends and reads raise
        BusyResourceError, as do this object's direct paths.
        """
        self._refuse_if_held()
        stream = self.stream
        if stream._state is not self.ok or stream._delayed_outgoing is not None or not self._take_ownership():
            yield None  # TLS 1.3 session tickets still held back, or a trio task at work: trio does it all
            return
        self.held = True
        try:
            self._count("body")
            yield Wire(self, self.tls, self.incoming, self.outgoing, self.socket.fileno())
        finally:
            self.held = False
            self.recv_lock.release()
            self.send_lock.release()
            for detector in reversed(self.detectors):
                detector.__exit__(None, None, None)

    def _take_ownership(self) -> bool:
        """Enter the stream's conflict detectors and take its inner locks, all or none, without yielding."""
        if self.send_lock.locked() or self.recv_lock.locked():
            return False
        entered: list[AbstractContextManager[None]] = []
        try:
            for detector in self.detectors:
                detector.__enter__()
                entered.append(detector)
        except trio.BusyResourceError:
            for detector in reversed(entered):
                detector.__exit__(None, None, None)
            return False
        self.send_lock.acquire_nowait()
        self.recv_lock.acquire_nowait()
        return True


@frozen
class Wire:
    """The TLS object and socket descriptor beneath a held stream, for worker threads (Rule 3)."""

    owner: FastPath
    tls: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    fd: int

    def check_held(self) -> None:
        """AssertionError unless the stream is still held for the threads: a thread never drives a shared stream."""
        if not self.owner.held:
            raise AssertionError("a worker thread would drive a TLS stream it does not own")


def decrypt_into(tls: ssl.SSLObject, view: memoryview) -> int:
    """``tls.read`` into ``view``: the count of decrypted bytes (0 at the end), SSLWantReadError if none are here."""
    return cast(int, tls.read(len(view), view))  # typeshed says bytes; given a buffer, read returns the count


def hold(fast: FastPath | None) -> AbstractContextManager[Wire | None]:
    """``fast.hold()``, or no Wire where the channel has no fast path."""
    return nullcontext(None) if fast is None else fast.hold()


def probe(stream: trio.abc.Stream) -> FastPath | None:
    """The fast path over ``stream``, a handshaken TLS stream; None (reason logged once) where it must not be used."""
    found = check(stream)
    if isinstance(found, FastPath):
        return found
    if found not in _TOLD:
        _TOLD.add(found)
        # A trio without what we need is worth a warning; the switch and test streams are not.
        (log.warning if found.startswith("trio ") else log.debug)("transport fast path off: %s", found)
    return None


def check(stream: trio.abc.Stream) -> FastPath | str:
    """The fast path over ``stream``, or why there is none (Rule 1)."""
    if os.environ.get(SWITCH, "") not in ("", "0"):
        return f"{SWITCH} is set"
    if type(stream) is not trio.SSLStream:
        return "not a trio.SSLStream"
    transport = stream.transport_stream
    if type(transport) is not trio.SocketStream:
        return "not TLS over a trio.SocketStream"
    try:
        states = getattr(importlib.import_module(STATE_MODULE), STATE_ENUM, None)
        ok, broken = getattr(states, "OK", None), getattr(states, "BROKEN", None)
        if ok is None or broken is None:
            raise _Missing(f"{STATE_MODULE}.{STATE_ENUM} has no OK and BROKEN")
        if _private(stream, "state", type(ok)) is not ok:
            return "the TLS stream is broken or closed"
        if getattr(_private(stream, "handshook", object), "done", None) is not True:
            return "the TLS handshake is not done"
        _private(stream, "delayed", (bytes, type(None)))
        _private(stream, "recv_count", int)
        detectors = (_private(stream, "send_detector", object), _private(stream, "recv_detector", object))
        if not all(hasattr(d, "__enter__") and hasattr(d, "__exit__") for d in detectors):
            raise _Missing("SSLStream's conflict detectors are not context managers")
        raw_socket = getattr(transport.socket, SOCKET_NAME, None)
        if not isinstance(raw_socket, socket.socket):
            raise _Missing(f"trio's socket has no stdlib socket at {SOCKET_NAME}")
        return FastPath(
            stream,
            tls=_private(stream, "tls", ssl.SSLObject),
            incoming=_private(stream, "incoming", ssl.MemoryBIO),
            outgoing=_private(stream, "outgoing", ssl.MemoryBIO),
            raw_socket=raw_socket,
            send_lock=_private(stream, "send_lock", trio.StrictFIFOLock),
            recv_lock=_private(stream, "recv_lock", trio.Lock),
            detectors=detectors,  # type: ignore[arg-type]  # checked just above
            ok=ok,
            broken=broken,
        )
    except (_Missing, ImportError) as exc:
        return f"trio {trio.__version__}: {exc}"


_ABSENT = object()


def _private(stream: trio.SSLStream[trio.SocketStream], role: str, kind: type[_T] | tuple[type[_T], ...]) -> _T:
    """The stream's private attribute for ``role``, checked to be a ``kind``; _Missing otherwise."""
    name = STREAM_NAMES[role]
    value = getattr(stream, name, _ABSENT)
    if value is _ABSENT:
        raise _Missing(f"SSLStream has no {name}")
    if not isinstance(value, kind):
        raise _Missing(f"SSLStream.{name} is a {type(value).__name__}")
    return value
