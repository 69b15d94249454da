"""The client side: RPC sessions with several calls in flight, and file put/get.

Every connection is opened by the client (friends dial out and need no open
port), pins the server's key from its Address, and proves the client's own
key inside TLS. Callers bound waits with ``trio.fail_after``; the transport's
own deadlines only stop a peer from stalling a frame or a handshake.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import attrs
import trio

from frender import codec
from frender.transports._channel import Channel, single_error
from frender.transports._files import Progress, describe, receive_file, send_file
from frender.transports._handshake import client_handshake
from frender.transports.address import Address
from frender.transports.errors import PeerGone, ProtocolError, RemoteError
from frender.transports.identity import Identity
from frender.transports.limits import Limits
from frender.transports.messages import Failure, FileHeader, OpenGet, OpenPut, OpenRpc, Ready, Reply, Request, decode_body

__all__ = ["FileLink", "Session", "connect", "open_session", "put_file", "get_file", "file_header"]

M = TypeVar("M")
T = TypeVar("T")
_TLS = Identity.client_context()  # one context, shared: it holds no per-peer state


class Session:
    """One authenticated RPC connection; ``call`` may run from many tasks at once."""

    def __init__(self, channel: Channel, server_fingerprint: str) -> None:
        self.server_fingerprint = server_fingerprint
        self._channel = channel
        self._next_id = 0
        self._waiting: dict[int, _Waiter] = {}
        self._broken: PeerGone | None = None

    @property
    def closed(self) -> bool:
        """Whether the connection is known to be gone (every call would fail with PeerGone)."""
        return self._broken is not None

    async def call(self, request: object) -> object:
        """Send ``request`` and return the server's reply message.

        Raises RemoteError when the server refuses, PeerGone when the
        connection fails (then every later call fails the same way).
        """
        if self._broken is not None:
            raise type(self._broken)(self._broken.reason)
        self._next_id += 1
        waiter = self._waiting[self._next_id] = _Waiter()
        try:
            await self._channel.send_message(Request(id=self._next_id, message=codec.pack(request)))
            await waiter.done.wait()
        finally:
            # A caller that gave up (cancelled) leaves no slot behind; its
            # late reply is dropped by the reader.
            self._waiting = {id: w for id, w in self._waiting.items() if w is not waiter}
        return waiter.outcome()

    async def _receive_replies(self) -> None:
        """Route each reply to its caller; on failure, fail every caller. Never raises."""
        try:
            while (message := await self._channel.receive_message()) is not None:
                if isinstance(message, Reply):
                    outcome: object = decode_body(message.message)
                elif isinstance(message, Failure):
                    outcome = RemoteError(message.code, message.reason)
                else:
                    raise ProtocolError(f"expected Reply or Failure, got {type(message).__name__}")
                waiter = self._waiting.get(message.id)
                if waiter is not None:
                    waiter.settle(outcome)
            raise PeerGone("server closed the session")
        except PeerGone as exc:
            self._broken = exc
            for waiter in self._waiting.values():
                waiter.settle(type(exc)(exc.reason))


class _Waiter:
    """One call's reply slot."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self._outcome: object = None

    def settle(self, outcome: object) -> None:
        self._outcome = outcome
        self.done.set()

    def outcome(self) -> object:
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


@asynccontextmanager
async def connect(address: Address, identity: Identity, *, limits: Limits = Limits()) -> AsyncIterator[Session]:
    """An RPC session with the server at ``address``, closed on exit."""
    stream = await _dial(address, limits)
    async with open_session(stream, identity, address.fingerprint, limits=limits) as session:
        yield session


@asynccontextmanager
async def open_session(
    stream: trio.abc.Stream, identity: Identity, server_fingerprint: str, *, limits: Limits = Limits()
) -> AsyncIterator[Session]:
    """An RPC session over an already-open transport stream (tests: memory streams)."""
    async with _opened(stream, identity, server_fingerprint, OpenRpc(), limits) as channel:
        await _expect(channel, Ready)
        session = Session(channel, server_fingerprint)
        # The reader never raises, so an exception here is the caller's own:
        # it leaves as it was raised, not wrapped in a group.
        with single_error():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session._receive_replies)
                try:
                    yield session
                finally:
                    nursery.cancel_scope.cancel()


async def put_file(
    address: Address,
    identity: Identity,
    header: FileHeader,
    path: Path,
    *,
    limits: Limits = Limits(),
    progress: Progress | None = None,
) -> object:
    """Send the file at ``path`` as ``header`` describes it; returns the server's reply.

    ``progress`` is told the bytes sent so far (see ``FileLink.put``).
    """
    async with FileLink(address, identity, limits=limits) as link:
        return await link.put(header, path, progress=progress)


async def get_file(
    address: Address,
    identity: Identity,
    header: FileHeader,
    dest: Path,
    *,
    max_size: int,
    limits: Limits = Limits(),
) -> Path:
    """Fetch the file ``header`` names into ``dest``, checked against the server's
    size and sha256 (and ``header.sha256`` when it is given); returns ``dest``.

    The server's sha256 comes in its header, or after the body when it had not
    hashed that version of the file before; either way nothing lands at
    ``dest`` unless the bytes match it.
    """
    async with FileLink(address, identity, limits=limits) as link:
        return await link.get(header, dest, max_size=max_size)


class FileLink:
    """Puts and gets, one after another, over one connection: many small files, one handshake.

    Each transfer is checked exactly as ``put_file`` and ``get_file`` check
    theirs. The connection is opened by the first transfer and redialled when
    it sat idle long enough for the server to close it (or turns out closed:
    the transfer is then tried once more on a new one). Any failure inside a
    transfer closes it, so the next one starts afresh.
    """

    def __init__(self, address: Address, identity: Identity, *, limits: Limits = Limits()) -> None:
        self.address = address
        self.identity = identity
        self.limits = limits
        self._open: contextlib.AsyncExitStack | None = None
        self._channel: Channel | None = None
        self._used = 0.0  # trio time the last transfer ended

    async def put(self, header: FileHeader, path: Path, *, progress: Progress | None = None) -> object:
        """Send the file at ``path`` as ``header`` describes it; returns the server's reply.

        ``progress`` is told the bytes sent so far, on the calling task's
        thread, every few MB or ~0.2 s and once all are sent (before the
        server's reply). A transfer tried again on a new connection starts
        again from 0.
        """
        if not header.sha256:
            raise ValueError("a put must name the file's sha256 (see file_header)")
        size = os.stat(path).st_size
        if size != header.size:
            raise ValueError(f"{path} has {size} bytes, the header says {header.size}")

        async def transfer(channel: Channel) -> object:
            await _expect(channel, Ready)
            await send_file(channel, path, size, progress=progress)
            reply = await _expect(channel, Reply)
            return decode_body(reply.message)

        return await self._transfer(OpenPut(header=header), transfer)

    async def get(self, header: FileHeader, dest: Path, *, max_size: int) -> Path:
        """Fetch the file ``header`` names into ``dest`` (see ``get_file``); returns ``dest``."""

        async def transfer(channel: Channel) -> Path:
            offered = await _expect(channel, FileHeader)
            if (offered.kind, offered.job, offered.frame) != (header.kind, header.job, header.frame):
                raise ProtocolError(f"asked for {header.kind} {header.job}/{header.frame}, offered {offered}")
            if header.sha256 and offered.sha256 and offered.sha256 != header.sha256:
                raise ProtocolError(f"offered sha256 {offered.sha256}, expected {header.sha256}")
            if offered.size > max_size:
                raise ProtocolError(f"offered {offered.size} bytes, more than max_size {max_size}")

            async def sha256_after_body() -> str:
                # Offered without sha256: the server hashed the file while sending
                # it and names the sha256 now, or refuses (sha256_mismatch).
                trailer = await _expect(channel, FileHeader)
                if not trailer.sha256 or attrs.evolve(trailer, sha256="") != offered:
                    raise ProtocolError(f"expected the sha256 of {offered} after its body, got {trailer}")
                if header.sha256 and trailer.sha256 != header.sha256:
                    raise ProtocolError(f"sent sha256 {trailer.sha256}, expected {header.sha256}")
                return trailer.sha256

            await receive_file(channel, offered, dest, sha256_after=sha256_after_body)
            return dest

        return await self._transfer(OpenGet(header=header), transfer)

    async def _transfer(self, opening: OpenPut | OpenGet, transfer: Callable[[Channel], Awaitable[T]]) -> T:
        if self._channel is not None and trio.current_time() - self._used > self.limits.message_deadline / 2:
            await self.aclose()  # the server waits message_deadline for the next transfer, then closes
        if self._channel is not None:
            try:
                await self._channel.send_message(opening)
                return await self._run(transfer)
            except PeerGone:
                pass  # closed meanwhile: once more, on a new connection
        self._open = contextlib.AsyncExitStack()
        stream = await _dial(self.address, self.limits)
        self._channel = await self._open.enter_async_context(
            _opened(stream, self.identity, self.address.fingerprint, opening, self.limits)
        )
        return await self._run(transfer)

    async def _run(self, transfer: Callable[[Channel], Awaitable[T]]) -> T:
        assert self._channel is not None
        ok = False
        try:
            result = await transfer(self._channel)
            ok = True
            return result
        finally:
            if ok:
                self._used = trio.current_time()
            else:
                await self.aclose()

    async def aclose(self) -> None:
        """Close the connection, if one is open."""
        stack, self._open, self._channel = self._open, None, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                await stack.aclose()

    async def __aenter__(self) -> FileLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_HASH_HERE = 256 * 1024  # a file this small is hashed on the spot: a thread hop would cost more


async def file_header(path: Path, *, kind: str, job: int | str, frame: int = 0) -> FileHeader:
    """A header for the file at ``path``: its size and sha256 (computed in a thread unless the file is small)."""
    size = os.stat(path).st_size
    if size <= _HASH_HERE:
        size, sha256 = describe(path, size + 1)  # one read, and the end of the file seen
    else:
        size, sha256 = await trio.to_thread.run_sync(describe, path)
    return FileHeader(kind=kind, job=job, frame=frame, size=size, sha256=sha256)


async def _dial(address: Address, limits: Limits) -> trio.SocketStream:
    with trio.move_on_after(limits.handshake_deadline):
        try:
            return await trio.open_tcp_stream(address.host, address.port)
        except OSError as exc:
            raise PeerGone(f"cannot connect to {address.host}:{address.port}: {exc}") from None
    raise PeerGone(f"no connection to {address.host}:{address.port} within {limits.handshake_deadline:g} s")


@asynccontextmanager
async def _opened(
    stream: trio.abc.Stream, identity: Identity, fingerprint: str, opening: object, limits: Limits
) -> AsyncIterator[Channel]:
    """TLS with the pinned key, our key proof and the opening frame; closed on exit."""
    channel = Channel(trio.SSLStream(stream, _TLS, https_compatible=True), limits)
    try:
        with trio.move_on_after(limits.handshake_deadline) as scope:
            await client_handshake(channel, identity, fingerprint)
            await channel.send_message(opening)
        if scope.cancelled_caught:
            raise PeerGone(f"handshake not complete within {limits.handshake_deadline:g} s")
        yield channel
    finally:
        await trio.aclose_forcefully(channel.stream)


async def _expect(channel: Channel, kind: type[M]) -> M:
    """The next message of ``kind``; a Failure from the server is raised as RemoteError."""
    message = await channel.expect((kind, Failure))
    if isinstance(message, Failure):
        raise RemoteError(message.code, message.reason)
    return message
