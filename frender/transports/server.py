"""The server: one TLS port for calls and files, bounded in every dimension.

Theory of operation. Each accepted connection is counted (overall and per
remote host) before any TLS work, then runs the handshake under
``handshake_deadline``; its opening frame says what it is for:

- an RPC session: requests are answered concurrently (at most
  ``max_in_flight`` at once; reading waits when that many are running), each
  reply carrying its request's id; the session ends on the client's close, on
  ``idle_timeout`` with no frame and no call in flight, or on any violation;
- a put: the handler names the destination from the header's ids, the body
  is streamed to disk under the size cap and hash check, then the handler's
  ``put_done`` reply is sent;
- a get: the handler names the file; a header with its size and sha256 goes
  first, then the bytes.

After a put or a get the peer may open another on the same connection, each
checked by the handler like the first, so many small files cost one handshake. A version of the file not yet hashed here goes with
  an empty sha256, hashed while it is sent, and its sha256 follows the bytes.

Rule 1: nothing a peer sends can end the server. A violation ends that
        connection with one log line on ``frender.transports``; a handler's own
        crash is logged with its traceback and answered "internal".
Rule 2: a handler refuses by raising Refused(code, reason); the peer gets the
        code and reason, the log gets one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from frender import codec
from frender.transports._channel import Channel
from frender.transports._files import HashMismatch, receive_file, send_file
from frender.transports._handshake import Peer, server_handshake
from frender.transports.errors import PeerGone, ProtocolError, Refused
from frender.transports.identity import Identity
from frender.transports.limits import Limits
from frender.transports.messages import (
    Failure,
    FileHeader,
    OpenGet,
    OpenPut,
    OpenRpc,
    Ready,
    Reply,
    Request,
    decode_body,
    encode_frame,
    encode_reply,
)

__all__ = ["Handler", "Peer", "serve", "serve_stream"]

log = logging.getLogger("frender.transports")


class Handler:
    """What an application serves. Override what it offers; the rest refuses."""

    async def call(self, peer: Peer, request: object) -> object:
        """The reply to ``request`` (a registered message), or raise Refused."""
        raise Refused("unsupported", "this server takes no calls")

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        """Where the file goes, built from the header's ids only, or raise Refused."""
        raise Refused("unsupported", "this server takes no files")

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        """The reply once the checked file is in place at ``path``."""
        return Ready()

    def receiving(self, peer: Peer, header: FileHeader) -> contextlib.AbstractAsyncContextManager[object]:
        """Held while an accepted put's body is received (its buffers live): a handler may make puts take turns here,
        before the peer is told to send. By default none waits."""
        return contextlib.nullcontext()

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        """The file to send for ``header`` (its sha256 may be ""), or raise Refused."""
        raise Refused("unsupported", "this server serves no files")

    def call_at_once(self, peer: Peer, request: object) -> object | None:
        """The reply to ``request`` if it is ready without waiting, or None: then ``call`` answers it.

        Runs on the session's reading task, between frames, so it must never
        block; replies given here skip a task per call and leave together.
        """
        return None


async def serve(
    identity: Identity,
    host: str,
    port: int,
    handler: Handler,
    *,
    limits: Limits = Limits(),
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port) until cancelled; starts with the bound port."""
    server = _Server(identity, handler, limits)
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.accept, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


async def serve_stream(
    identity: Identity, stream: trio.abc.Stream, handler: Handler, *, host: str, limits: Limits = Limits()
) -> None:
    """Serve one already-accepted connection (tests drive it over memory streams)."""
    await _Server(identity, handler, limits).serve_connection(stream, host)


class _Server:
    def __init__(self, identity: Identity, handler: Handler, limits: Limits) -> None:
        self.identity = identity
        self.handler = handler
        self.limits = limits
        self.context = identity.server_context()
        self.open = 0
        self.per_host: Counter[str] = Counter()
        # The sha256 of a file served by get, by its stat identity: a .blend
        # sent to many friends is hashed once, and any change is noticed.
        self.hashes: dict[tuple[object, ...], str] = {}

    async def accept(self, stream: trio.SocketStream) -> None:
        host = str(stream.socket.getpeername()[0])
        # Counted before TLS: a refused connection costs no handshake.
        if self.open >= self.limits.max_connections:
            reason = f"{self.open} connections open (max_connections)"
        elif self.per_host[host] >= self.limits.max_per_host:
            reason = f"{self.per_host[host]} connections open from this host (max_per_host)"
        else:
            reason = ""
        if reason:
            log.warning("refused connection from %s: %s", host, reason)
            await trio.aclose_forcefully(stream)
            return
        self.open += 1
        self.per_host[host] += 1
        try:
            await self.serve_connection(stream, host)
        finally:
            self.open -= 1
            self.per_host[host] -= 1
            if not self.per_host[host]:
                del self.per_host[host]

    async def serve_connection(self, stream: trio.abc.Stream, host: str) -> None:
        channel = Channel(trio.SSLStream(stream, self.context, server_side=True, https_compatible=True), self.limits)
        who = host
        try:
            with trio.move_on_after(self.limits.handshake_deadline) as scope:
                peer = await server_handshake(channel, self.identity, host)
                who = f"{host} ({peer.fingerprint[:19]})"
                opening = await channel.expect((OpenRpc, OpenPut, OpenGet))
            if scope.cancelled_caught:
                raise PeerGone(f"handshake not complete within {self.limits.handshake_deadline:g} s")
            try:
                if isinstance(opening, OpenRpc):
                    await self._rpc(channel, peer, who)
                else:
                    await self._files(channel, peer, opening)
            except Refused as exc:
                log.warning("refused %s: %s", who, exc)
                with trio.move_on_after(self.limits.message_deadline):
                    await channel.send_message(Failure(id=0, code=exc.code[:64], reason=exc.reason[:1000]))
        except* PeerGone as group:
            log.warning("dropped connection from %s: %s", who, _first(group).reason)
        except* Exception as group:
            log.error("connection from %s failed", who, exc_info=_first(group))
        finally:
            await trio.aclose_forcefully(channel.stream)

    async def _rpc(self, channel: Channel, peer: Peer, who: str) -> None:
        await channel.send_message(Ready())
        activity = _Activity()
        slots = trio.Semaphore(self.limits.max_in_flight)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_idle, activity, nursery.cancel_scope, who)
            while bodies := await channel.receive_bodies():
                activity.touch()
                answered: list[bytes] = []  # replies given at once, sent together
                for body in bodies:
                    message = decode_body(body)
                    if not isinstance(message, Request):
                        raise ProtocolError(f"expected Request, got {type(message).__name__}")
                    request = decode_body(message.message)
                    data = self._answer_at_once(peer, message.id, request)
                    if data is not None:
                        answered.append(data)
                        continue
                    try:
                        slots.acquire_nowait()  # a free slot costs no scheduler round trip
                    except trio.WouldBlock:
                        if answered:  # about to wait: what is answered leaves first
                            await channel.send_bytes(b"".join(answered), self.limits.message_deadline)
                            answered = []
                        await slots.acquire()
                    activity.in_flight += 1
                    nursery.start_soon(self._answer, channel, peer, message.id, request, slots, activity)
                if answered:
                    await channel.send_bytes(b"".join(answered), self.limits.message_deadline)
            nursery.cancel_scope.cancel()  # the client left: its pending replies have nowhere to go

    def _answer_at_once(self, peer: Peer, id: int, request: object) -> bytes | None:
        """The reply frame if the handler answers without waiting (``call_at_once``), else None."""
        try:
            reply = self.handler.call_at_once(peer, request)
            if reply is None:
                return None
            return self._reply_frame(id, reply)
        except Refused as exc:
            return _failure_frame(id, exc)
        except Exception:
            log.exception("handler failed on %s from %s", type(request).__name__, peer.fingerprint)
            return _failure_frame(id, _INTERNAL)

    async def _answer(
        self, channel: Channel, peer: Peer, id: int, request: object, slots: trio.Semaphore, activity: _Activity
    ) -> None:
        try:
            try:
                reply = await self.handler.call(peer, request)
                data = self._reply_frame(id, reply)
            except Refused as exc:
                data = _failure_frame(id, exc)
            except Exception:
                log.exception("handler failed on %s from %s", type(request).__name__, peer.fingerprint)
                data = _failure_frame(id, _INTERNAL)
            await channel.send_bytes(data, self.limits.message_deadline)
        finally:
            slots.release()
            activity.in_flight -= 1
            activity.touch()

    def _reply_frame(self, id: int, reply: object) -> bytes:
        """Encoded once: the size check and the send use the same bytes."""
        data = encode_reply(id, codec.pack(reply))
        if len(data) > self.limits.max_frame:
            raise ValueError(f"reply {type(reply).__name__} exceeds max_frame")
        return data

    async def _watch_idle(self, activity: _Activity, session: trio.CancelScope, who: str) -> None:
        while True:
            await trio.sleep_until(activity.last + self.limits.idle_timeout)
            if activity.in_flight:
                activity.touch()  # a call still running counts as activity
            elif trio.current_time() >= activity.last + self.limits.idle_timeout:
                log.info("closed idle connection from %s", who)
                session.cancel()
                return

    async def _put(self, channel: Channel, peer: Peer, header: FileHeader) -> None:
        if not header.sha256:
            raise Refused("bad_header", "a put must name the file's sha256")
        if header.size > self.limits.max_file_size:
            raise Refused("too_large", f"{header.size} bytes exceeds the {self.limits.max_file_size}-byte limit")
        path = await self.handler.accept_put(peer, header)
        async with self.handler.receiving(peer, header):
            await channel.send_message(Ready())
            try:
                await receive_file(channel, header, path)
            except HashMismatch as exc:
                raise Refused("sha256_mismatch", str(exc)) from None
        reply = await self.handler.put_done(peer, header, path)
        await channel.send_message(Reply(id=0, message=codec.pack(reply)))

    async def _files(self, channel: Channel, peer: Peer, opening: OpenPut | OpenGet) -> None:
        """Serve the opening put or get, then each further one the peer sends, until it closes
        (or sends nothing more within ``message_deadline``): many small files, one handshake."""
        while True:
            if isinstance(opening, OpenPut):
                await self._put(channel, peer, opening.header)
            else:
                await self._get(channel, peer, opening.header)
            with trio.move_on_after(self.limits.message_deadline):
                following = await channel.receive_message()
                if following is None:
                    return  # the peer closed first, as it should: our last bytes were taken
                if not isinstance(following, (OpenPut, OpenGet)):
                    raise ProtocolError(f"expected OpenPut, OpenGet or the end, got {type(following).__name__}")
                opening = following
                continue
            return

    async def _get(self, channel: Channel, peer: Peer, request: FileHeader) -> None:
        path = await self.handler.open_get(peer, request)
        size, sha256 = await self._describe(path)
        if sha256 and request.sha256 and request.sha256 != sha256:
            raise Refused("sha256_mismatch", "the file here is not the one asked for")
        header = FileHeader(kind=request.kind, job=request.job, frame=request.frame, size=size, sha256=sha256)
        await channel.send_message(header)
        if sha256:
            await send_file(channel, path, size)
        else:
            # The first send of this version: hashed while it is read for
            # sending, not in a pass of its own; the sha256 follows the body.
            digest = hashlib.sha256()
            sent = await send_file(channel, path, size, digest)
            sha256 = digest.hexdigest()
            self._remember(path, sent, sha256)
            if request.sha256 and request.sha256 != sha256:
                raise Refused("sha256_mismatch", "the file here is not the one asked for")
            await channel.send_message(attrs.evolve(header, sha256=sha256))

    async def _describe(self, path: Path) -> tuple[int, str]:
        """The size of the file at ``path`` and its sha256 if this version was hashed here, else ""."""
        info = await trio.to_thread.run_sync(os.stat, path)
        return info.st_size, self.hashes.get(_version_of(path, info), "")

    def _remember(self, path: Path, info: os.stat_result, sha256: str) -> None:
        """Keep the sha256 of the version of ``path`` that ``info`` describes."""
        if len(self.hashes) >= 256:
            del self.hashes[next(iter(self.hashes))]
        self.hashes[_version_of(path, info)] = sha256


class _Activity:
    """When an RPC session last moved, and how many calls it has running."""

    def __init__(self) -> None:
        self.last = trio.current_time()
        self.in_flight = 0

    def touch(self) -> None:
        self.last = trio.current_time()


async def _await_close(channel: Channel) -> None:
    """Wait (briefly) for the client to close first, so our last bytes are not cut off by a reset."""
    with trio.move_on_after(channel.limits.message_deadline):
        try:
            await channel.receive_some(1)
        except PeerGone:
            pass  # all we sent was already taken; how the client hung up does not matter


_INTERNAL = Refused("internal", "internal error")


def _failure_frame(id: int, exc: Refused) -> bytes:
    return encode_frame(Failure(id=id, code=exc.code[:64], reason=exc.reason[:1000]))


def _version_of(path: Path, info: os.stat_result) -> tuple[object, ...]:
    """What tells one version of a file from another."""
    return (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


E = TypeVar("E", bound=BaseException)


def _first(group: BaseExceptionGroup[E]) -> E:
    """The first leaf exception of a (nested) group."""
    exc: E | BaseExceptionGroup[E] = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
