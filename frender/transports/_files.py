"""File bodies on the wire: moved off the event loop in large pieces, hashed on the way, renamed when proven.

Rule 1: bytes land in a temporary ``.{name}.*.part`` file beside the
        destination; only a body of exactly the announced size and sha256 is
        fsynced and renamed into place. Anything else deletes the temporary
        file, so nothing that looks complete is ever left behind.
Rule 2: the receiver reads exactly the announced size, which the caller has
        already capped, so the size limit holds while reading, not after.
        Both ends give the whole body ``body_deadline``: a slow-drip peer on
        either side is dropped.
Rule 3: memory stays flat: each end holds a few buffers of at most
        ``Limits.chunk_size``, reused for the whole body; a receiver moves
        ciphertext into the TLS object 64 KiB at a time (its memory BIO keeps
        the largest buffer it held, for the connection's life).
Rule 4: over TLS on a socket (every real connection) the body does not pass
        through the event loop. Once the frames before it are exchanged, a
        worker thread drives the connection's own ``ssl.SSLObject`` over a
        duplicate of the socket's descriptor: a chunk per system call, and
        no scheduler round trip per 16 KiB TLS record. It reads, hashes and
        encrypts a file it sends; it decrypts, hashes and writes a small
        file it receives, and hands a large one's decrypted pieces to a
        second thread that hashes and writes them (ssl, hashlib and file I/O
        release the GIL). A thread is held only while bytes flow: when the
        peer is quiet for _QUIET_MS it hands the wait back to the event loop
        and a later burst carries on, so slow peers cannot use up the
        process's threads. The task that started a burst only waits for it,
        and owns the deadline: threads look for cancellation after every
        piece (``trio.from_thread.check_cancelled``), so a cancelled or
        timed-out transfer never leaves a thread behind. Nothing else uses
        the stream meanwhile (a file connection carries one body); TLS bytes
        that arrive past the body stay in the TLS object's buffer for the
        stream's next frame. Other streams (memory streams in tests) take an
        awaited path under the same rules, and so does every stream where
        the fast path is off (``_fastpath``: a trio without the internals it
        needs, or FRENDER_NO_FAST_PATH=1). While the threads work the stream
        is held for them (``FastPath.hold``): a trio task touching it
        meanwhile fails at once instead of corrupting the TLS state.
Rule 5: a sender may be told its progress (``send_file(progress=...)``):
        always on the event loop's thread, every few MB or ~0.2 s and once
        at the end. A worker thread hands the count over with
        ``trio.from_thread.run_sync``, only that often.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import select
import socket
import ssl
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Awaitable, BinaryIO, Callable, TypeVar

import trio

from frender.transports._channel import Channel, broken_as_peer_gone, single_error
from frender.transports._fastpath import Wire, decrypt_into, hold
from frender.transports.errors import PeerGone, ProtocolError
from frender.transports.messages import FileHeader

_PIECE = 256 * 1024  # decrypted, hashed and written while still in the CPU cache
_PIECES_IN_FLIGHT = 4  # per pipelined body: one being decrypted, two queued, one being written
# Ciphertext moved from the socket into the TLS object at a time. The TLS object's memory BIO keeps the
# largest buffer it ever held for the connection's life: a 1 MiB move left ~1 MiB on every connection
# that had sent a body (a requester with a thousand friends sending: a gigabyte).
_RAW = 64 * 1024
_QUIET_MS = 50  # a worker thread waiting this long for the peer hands the wait back to the event loop
_REPORT_BYTES = 4 << 20  # a sender reports progress after this many bytes...
_REPORT_SECONDS = 0.2  # ...or this long, whichever comes first

Finish = Callable[[BinaryIO, "hashlib._Hash"], None]
Progress = Callable[[int], None]
"""Told the bytes of a body sent so far, on the event loop's thread: every few MB or ~0.2 s, and once at the end."""
T = TypeVar("T")


class HashMismatch(ProtocolError):
    """A body whose sha256 is not the one its header announced."""


def body_deadline(channel: Channel, size: int) -> float:
    """Seconds a body of ``size`` bytes may take: the slow-drip bound for files."""
    return channel.limits.message_deadline + size / channel.limits.min_file_rate


async def receive_file(
    channel: Channel,
    header: FileHeader,
    destination: Path,
    *,
    sha256_after: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Stream ``header.size`` bytes into ``destination`` if their sha256 matches (Rule 1).

    A header without sha256 (a get answered before the server knew it) is
    checked against ``sha256_after()``, which reads the sha256 sent after
    the body.
    """
    if not header.sha256 and sha256_after is None:
        raise ValueError("a body without sha256 in its header needs sha256_after")
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            if header.sha256:
                # The thread that takes the last bytes also checks, fsyncs and renames.
                place = partial(_prove_and_place, header.sha256, temp, destination)
                await _receive_body(channel, header.size, file, place)
            else:
                assert sha256_after is not None
                digest = await _receive_body(channel, header.size, file, None)
                with trio.move_on_after(channel.limits.message_deadline) as scope:
                    expected = await sha256_after()
                if scope.cancelled_caught:
                    raise PeerGone(f"no sha256 after the body within {channel.limits.message_deadline:g} s")
                await trio.to_thread.run_sync(_prove_and_place, expected, temp, destination, file, digest)
    finally:
        temp.unlink(missing_ok=True)


def _prove_and_place(expected: str, temp: Path, destination: Path, file: BinaryIO, digest: "hashlib._Hash") -> None:
    """Fsync the complete body and rename it into place, only if its sha256 is ``expected``."""
    actual = digest.hexdigest()
    if actual != expected:
        raise HashMismatch(f"header says sha256 {expected}, the bytes hash to {actual}")
    file.flush()
    os.fsync(file.fileno())
    os.replace(temp, destination)


async def _receive_body(channel: Channel, size: int, file: BinaryIO, finish: Finish | None) -> "hashlib._Hash":
    """Read exactly ``size`` bytes into ``file`` and hash them, then ``finish(file, digest)``
    in the thread that wrote the last of them."""
    digest = hashlib.sha256()
    finished = False  # finish ran: a deadline passing after that changes nothing
    with trio.move_on_after(body_deadline(channel, size)) as scope, hold(channel.fast) as wire:
        prefix = channel.take_buffered(size)
        if wire is None:
            _write_and_hash(file, digest, prefix)
            await _receive_awaited(channel, size - len(prefix), file, digest)
            if finish is not None:
                await trio.to_thread.run_sync(finish, file, digest)
        else:
            with _Link(wire, max(1, min(_RAW, channel.limits.chunk_size, size - len(prefix)))) as link:
                body = _Body(link, size, prefix, file, digest, finish)
                await (body.receive_small() if size - len(prefix) <= 2 * _PIECE else body.receive_pipelined())
        finished = True
    if scope.cancelled_caught and not finished:
        raise PeerGone(f"file of {size} bytes not received within {body_deadline(channel, size):g} s")
    return digest


class _Body:
    """A body being received over a _Link, in bursts of worker-thread work (Rule 4)."""

    def __init__(
        self, link: _Link, size: int, prefix: bytes, file: BinaryIO, digest: "hashlib._Hash", finish: Finish | None
    ) -> None:
        self.link = link
        self.size = size
        self.prefix = prefix  # bytes the channel had already decrypted: written first
        self.received = len(prefix)
        self.complete = False  # every byte is in and the TLS object owes the peer nothing
        self.file = file
        self.digest = digest
        self.finish = finish

    async def receive_small(self) -> None:
        """A small body (a rendered frame): usually one thread hop that decrypts, hashes, writes and finishes."""
        piece = bytearray(min(_PIECE, self.size - self.received))

        def burst() -> int:
            self._write_prefix()
            waiting = self._decrypt(lambda: piece, self._write)
            if self.complete and self.finish is not None:
                self.finish(self.file, self.digest)
            return waiting

        while waiting := await trio.to_thread.run_sync(burst):
            await _wait_for(self.link, waiting)

    async def receive_pipelined(self) -> None:
        """A large body on two threads: one decrypts pieces while the other hashes and writes them."""
        free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        for _ in range(_PIECES_IN_FLIGHT):
            free.put(bytearray(_PIECE))

        def decrypt() -> int:
            try:
                return self._decrypt(partial(_take, free), lambda *filled: full.put(filled))
            finally:
                full.put(None)  # the end of this burst for the writer

        def write() -> None:
            self._write_prefix()
            while (filled := _take(full)) is not None:
                self._write(*filled)
                free.put(filled[0])
            if self.complete and self.finish is not None:
                self.finish(self.file, self.digest)

        while True:
            # A failure on either side cancels the other, which sees it within _QUIET_MS.
            with single_error():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(trio.to_thread.run_sync, write))
                    waiting = await trio.to_thread.run_sync(decrypt)
            if not waiting:
                return
            await _wait_for(self.link, waiting)

    def _decrypt(self, take: Callable[[], bytearray], give: Callable[[bytearray, int], None]) -> int:
        """Blocking: decrypt the body into pieces from ``take()``, handing each on with ``give(piece, count)``.

        Returns 0 once every byte is in, or the poll event to wait for when
        the peer went quiet (Rule 4).
        """
        self.link.wire.check_held()
        while self.received < self.size:
            trio.from_thread.check_cancelled()
            piece = take()
            want = min(len(piece), self.size - self.received)
            with memoryview(piece)[:want] as view:
                count, waiting = self.link.read_into(view)
            self.received += count
            give(piece, count)
            if waiting:
                return waiting
            if count < want:
                raise PeerGone(f"peer closed after {self.received} of {self.size} bytes")
        if not self.link.flush():  # answers the TLS object owes the peer (a key update)
            return select.POLLOUT
        self.complete = True
        return 0

    def _write_prefix(self) -> None:
        if self.prefix:
            _write_and_hash(self.file, self.digest, self.prefix)
            self.prefix = b""

    def _write(self, piece: bytearray, count: int) -> None:
        _write_and_hash(self.file, self.digest, memoryview(piece)[:count])


async def _wait_for(link: _Link, event: int) -> None:
    """Wait on the event loop, holding no thread, until the quiet peer's socket is ready again."""
    if event == select.POLLIN:
        await trio.lowlevel.wait_readable(link.wire.fd)
    else:
        await trio.lowlevel.wait_writable(link.wire.fd)


def _take(pieces: "queue.SimpleQueue[T]") -> T:
    """The next item from ``pieces``, looking for cancellation while waiting for it."""
    while True:
        try:
            return pieces.get(timeout=_QUIET_MS / 1000)
        except queue.Empty:
            trio.from_thread.check_cancelled()


async def _receive_awaited(channel: Channel, size: int, file: BinaryIO, digest: "hashlib._Hash") -> None:
    """The body from a stream that is not TLS on a socket (tests' memory streams)."""
    with memoryview(bytearray(max(1, min(channel.limits.chunk_size, size)))) as whole:
        done = 0
        while done < size:
            with whole[: min(len(whole), size - done)] as view:
                filled = 0
                while filled < len(view):
                    count = await channel.receive_into(view[filled:])
                    if not count:
                        raise PeerGone(f"peer closed after {done + filled} of {size} bytes")
                    filled += count
                await trio.to_thread.run_sync(_write_and_hash, file, digest, view)
            done += filled


def _write_and_hash(file: BinaryIO, digest: "hashlib._Hash", data: bytes | memoryview) -> None:
    with memoryview(data) as view:
        for start in range(0, len(view), _PIECE):
            with view[start : start + _PIECE] as piece:
                digest.update(piece)
                file.write(piece)


async def send_file(
    channel: Channel, path: Path, size: int, digest: "hashlib._Hash | None" = None, progress: Progress | None = None
) -> os.stat_result:
    """Send exactly ``size`` bytes of ``path``, hashed into ``digest`` when given.

    ``progress`` (when given) is told the bytes sent so far, on the event
    loop's thread, every few MB or ~0.2 s, and ``size`` once all are sent.
    Returns the stat of the file that was sent; OSError if it was shorter
    than ``size`` or changed while it was read.
    """
    pacer = _Pacer(progress)
    with trio.move_on_after(body_deadline(channel, size)), hold(channel.fast) as wire:
        if wire is None:
            opened = await _send_awaited(channel, path, size, digest, pacer)
        else:
            with _Link(wire, 0) as link, _Sending(link, path, size, digest, channel.limits.chunk_size, pacer) as sending:
                while not await trio.to_thread.run_sync(sending.burst):
                    await _wait_for(link, select.POLLOUT)
                opened = sending.opened
        pacer.done(size)
        return opened
    # Only the deadline leaves the block above without returning.
    raise PeerGone(f"peer did not take {size} bytes within {body_deadline(channel, size):g} s")


class _Pacer:
    """When a sender tells its ``progress``: after _REPORT_BYTES or _REPORT_SECONDS, whichever comes first.

    Worker threads hand the count to the event loop with ``trio.from_thread.run_sync``,
    a round trip only this often; the event loop's own path calls ``progress`` directly.
    """

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.told = 0
        self.at = time.monotonic()

    def due(self, sent: int) -> bool:
        if self.progress is None or sent <= self.told:
            return False
        return sent - self.told >= _REPORT_BYTES or time.monotonic() - self.at >= _REPORT_SECONDS

    def tell(self, sent: int) -> None:
        """On the event loop: tell ``progress`` the bytes sent so far."""
        assert self.progress is not None
        self.told, self.at = sent, time.monotonic()
        self.progress(sent)

    def done(self, size: int) -> None:
        if self.progress is not None and self.told < size:
            self.tell(size)


class _Sending:
    """A file being sent over a _Link, in bursts of worker-thread work (Rule 4)."""

    def __init__(
        self, link: _Link, path: Path, size: int, digest: "hashlib._Hash | None", chunk_size: int, pacer: _Pacer
    ) -> None:
        self.link = link
        self.path = path
        self.size = size
        self.remaining = size
        self.digest = digest
        self.pacer = pacer
        self.chunk = bytearray(max(1, min(chunk_size, size)))
        self.file: io.FileIO | None = None  # opened by the first burst
        self.opened: os.stat_result

    def __enter__(self) -> _Sending:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.file is not None:
            self.file.close()

    def burst(self) -> bool:
        """Blocking: read, hash, encrypt and send; True once every byte is sent, False when the peer stopped taking them."""
        self.link.wire.check_held()
        if self.file is None:
            self.file = _open_unbuffered(self.path)
            self.opened = os.fstat(self.file.fileno())
        if not self.link.flush():
            return False
        with memoryview(self.chunk) as whole:
            while self.remaining:
                trio.from_thread.check_cancelled()
                count = min(len(whole), self.remaining)
                with whole[:count] as view:
                    _read_chunk(self.file, view, self.digest)
                    self.link.encrypt(view)
                self.remaining -= count
                if not self.link.flush():
                    return False
                if self.remaining and self.pacer.due(sent := self.size - self.remaining):
                    trio.from_thread.run_sync(self.pacer.tell, sent)
        _check_unchanged(self.path, self.file, self.opened)
        return True


async def _send_awaited(
    channel: Channel, path: Path, size: int, digest: "hashlib._Hash | None", pacer: _Pacer
) -> os.stat_result:
    """The body onto a stream that is not TLS on a socket (tests' memory streams)."""
    file = await trio.to_thread.run_sync(_open_unbuffered, path)
    with file, memoryview(bytearray(max(1, min(channel.limits.chunk_size, size)))) as whole:
        opened = os.fstat(file.fileno())
        remaining = size
        while remaining:
            count = min(len(whole), remaining)
            with whole[:count] as view:
                await trio.to_thread.run_sync(_read_chunk, file, view, digest)
                await channel.send_bytes(view, channel.limits.message_deadline)
            remaining -= count
            if remaining and pacer.due(size - remaining):
                pacer.tell(size - remaining)
        _check_unchanged(path, file, opened)
    return opened


def _open_unbuffered(path: Path) -> io.FileIO:
    return open(path, "rb", buffering=0)


def _check_unchanged(path: Path, file: BinaryIO, opened: os.stat_result) -> None:
    """OSError if ``file`` was rewritten since it was opened: the bytes sent may mix two versions."""
    now = os.fstat(file.fileno())
    if (now.st_size, now.st_mtime_ns) != (opened.st_size, opened.st_mtime_ns):
        raise OSError(f"{path} changed while being sent")


def _read_chunk(file: io.FileIO, view: memoryview, digest: "hashlib._Hash | None") -> None:
    """Fill ``view`` from ``file`` (OSError if the file ends first) and hash it into ``digest``."""
    filled = 0
    while filled < len(view):
        count = file.readinto(view[filled:])
        if not count:
            raise OSError(f"file shrank while being sent: it ended {len(view) - filled} bytes early")
        filled += count
    if digest is not None:
        digest.update(view)


class _Link:
    """Blocking use of a held Wire from worker threads, over a duplicate of its socket.

    The duplicate shares the event loop socket's non-blocking mode, which
    stays as it is: a wait is a poll() of at most _QUIET_MS, after which the
    thread hands the wait back to the event loop (Rule 4).
    """

    def __init__(self, wire: Wire, receive_size: int) -> None:
        wire.check_held()
        self.wire = wire
        self.sock = socket.socket(fileno=os.dup(wire.fd))
        self.raw = bytearray(receive_size)
        self.poller = select.poll()
        self.unsent = memoryview(b"")  # encrypted bytes the peer has not taken yet

    def __enter__(self) -> _Link:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def read_into(self, view: memoryview) -> tuple[int, int]:
        """Decrypt into ``view`` until it is full, the peer closed, or the peer went quiet.

        Returns the count and, if the peer went quiet, the poll event to wait for (else 0).
        """
        filled = 0
        with broken_as_peer_gone():
            while filled < len(view):
                try:
                    count = decrypt_into(self.wire.tls, view[filled:])
                except ssl.SSLWantReadError:
                    if not self.flush():  # whatever the TLS object must answer first (a key update)
                        return filled, select.POLLOUT
                    if not self._receive_raw():
                        return filled, select.POLLIN
                    continue
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    break
                if not count:
                    break
                filled += count
        return filled, 0

    def _receive_raw(self) -> bool:
        """Move what the socket holds (up to a chunk) into the TLS object; False if nothing came."""
        while True:
            try:
                count = self.sock.recv_into(self.raw)
            except (BlockingIOError, InterruptedError):
                if not self._ready(select.POLLIN):
                    return False
                continue
            if not count:
                self.wire.incoming.write_eof()
                return True
            with memoryview(self.raw)[:count] as data:
                self.wire.incoming.write(data)
            return True

    def encrypt(self, view: memoryview) -> None:
        """Encrypt all of ``view`` into the TLS object's outgoing buffer (flush sends it)."""
        with broken_as_peer_gone():
            written = 0
            while written < len(view):
                written += self.wire.tls.write(view[written:])

    def flush(self) -> bool:
        """Send every encrypted byte held; False if the peer stopped taking them (the rest waits)."""
        with broken_as_peer_gone():
            while True:
                if not self.unsent:
                    if not self.wire.outgoing.pending:
                        return True
                    self.unsent = memoryview(self.wire.outgoing.read())
                try:
                    sent = self.sock.send(self.unsent)
                except (BlockingIOError, InterruptedError):
                    if not self._ready(select.POLLOUT):
                        return False
                    continue
                self.unsent = self.unsent[sent:]

    def _ready(self, event: int) -> bool:
        """Whether the socket becomes ready for ``event`` within _QUIET_MS."""
        self.poller.register(self.sock, event)
        return bool(self.poller.poll(_QUIET_MS))


def describe(path: Path, chunk_size: int = 1 << 20) -> tuple[int, str]:
    """Size and sha256 hex of the file at ``path`` (blocking: run it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as file, memoryview(bytearray(chunk_size)) as view:
        while count := file.readinto(view):
            with view[:count] as chunk:
                digest.update(chunk)
            size += count
    return size, digest.hexdigest()
