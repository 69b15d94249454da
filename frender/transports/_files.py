"""File bodies on the wire: streamed to disk in large chunks, hashed on the way, renamed when proven.

Rule 1: bytes land in a temporary ``.{name}.*.part`` file beside the
        destination; only a body of exactly the announced size and sha256 is
        fsynced and renamed into place. Anything else deletes the temporary
        file, so nothing that looks complete is ever left behind.
Rule 2: the receiver reads exactly the announced size, which the caller has
        already capped, so the size limit holds while reading, not after.
Rule 3: memory stays flat: at most three chunks (Limits.chunk_size) are held,
        reused for the whole body: one being received, one queued, one being
        written. Disk writes and hashing run in a worker thread (hashlib and
        file writes release the GIL), one call per chunk to keep Python
        overhead low; TLS records are decrypted straight into the chunk
        (Channel.receive_into), several per scheduler round trip.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable

import trio

from frender.transports._channel import Channel, single_error
from frender.transports.errors import PeerGone, ProtocolError
from frender.transports.messages import FileHeader

class HashMismatch(ProtocolError):
    """A body whose sha256 is not the one its header announced."""


def body_deadline(channel: Channel, size: int) -> float:
    """Seconds a body of ``size`` bytes may take: the slow-drip bound for files."""
    return channel.limits.message_deadline + size / channel.limits.min_file_rate


async def receive_file(channel: Channel, header: FileHeader, destination: Path) -> None:
    """Stream ``header.size`` bytes into ``destination`` if their sha256 matches (Rule 1)."""
    fd, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            # The last chunk's worker call also fsyncs, checks the hash and
            # renames: one thread hop in all for a small file.
            await _receive_into(channel, header.size, file, partial(_prove_and_place, header.sha256, temp, destination))
    finally:
        temp.unlink(missing_ok=True)


def _prove_and_place(expected: str, temp: Path, destination: Path, file: BinaryIO, digest: "hashlib._Hash") -> None:
    """Fsync the complete body and rename it into place, only if its sha256 is ``expected``."""
    _flush_and_sync(file)
    actual = digest.hexdigest()
    if actual != expected:
        raise HashMismatch(f"header says sha256 {expected}, the bytes hash to {actual}")
    os.replace(temp, destination)


async def _receive_into(
    channel: Channel, size: int, file: BinaryIO, finish: Callable[[BinaryIO, "hashlib._Hash"], None]
) -> None:
    """Read exactly ``size`` bytes into ``file`` and hash them; then ``finish(file, digest)`` in the worker thread."""
    digest = hashlib.sha256()
    chunk_size = max(1, min(channel.limits.chunk_size, size))
    # The network and the disk work at once: while a worker thread hashes and
    # writes one chunk, this task receives the next (Rule 3: at most three
    # buffers, reused: one being filled, one queued, one being written).
    free_send, free_receive = trio.open_memory_channel[bytearray](3)
    full_send, full_receive = trio.open_memory_channel[tuple[bytearray, int, bool]](1)
    for _ in range(min(3, -(-size // chunk_size))):
        free_send.send_nowait(bytearray(chunk_size))
    finished = False  # finish ran: a deadline passing after that changes nothing

    async def write_chunks() -> None:
        nonlocal finished
        async with full_receive:
            async for buffer, count, last in full_receive:
                await trio.to_thread.run_sync(_write_and_hash, file, digest, buffer, count, finish if last else None)
                finished = last
                free_send.send_nowait(buffer)

    with trio.move_on_after(body_deadline(channel, size)) as scope, single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_chunks)
            async with full_send:
                remaining = size
                while remaining:
                    buffer = await free_receive.receive()
                    with memoryview(buffer)[: min(remaining, chunk_size)] as view:
                        filled = 0
                        while filled < len(view):
                            count = await channel.receive_into(view[filled:])
                            if not count:
                                raise PeerGone(f"peer closed after {size - remaining + filled} of {size} bytes")
                            filled += count
                    remaining -= filled
                    await full_send.send((buffer, filled, not remaining))
        if not size:
            await trio.to_thread.run_sync(finish, file, digest)
            finished = True
    if scope.cancelled_caught and not finished:
        raise PeerGone(f"file of {size} bytes not received within {body_deadline(channel, size):g} s")


_PIECE = 256 * 1024  # hashed then written while still in the CPU cache; big writes cost more CPU here


def _write_and_hash(
    file: BinaryIO,
    digest: "hashlib._Hash",
    buffer: bytearray,
    count: int,
    finish: Callable[[BinaryIO, "hashlib._Hash"], None] | None,
) -> None:
    with memoryview(buffer) as view:
        for start in range(0, count, _PIECE):
            with view[start : min(count, start + _PIECE)] as piece:
                digest.update(piece)
                file.write(piece)
    if finish is not None:
        finish(file, digest)


def _flush_and_sync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


async def send_file(channel: Channel, path: Path, size: int) -> None:
    """Send exactly ``size`` bytes of ``path``, read in a thread into one reused buffer."""
    chunk_size = max(1, min(channel.limits.chunk_size, size))
    buffer = bytearray(chunk_size)
    with open(path, "rb", buffering=0) as file:
        remaining = size
        while remaining:
            with memoryview(buffer)[: min(chunk_size, remaining)] as view:
                count = await trio.to_thread.run_sync(_read_fully, file, view)
                if count < len(view):
                    raise OSError(f"{path} shrank while being sent")
                await channel.send_bytes(view, channel.limits.message_deadline)
            remaining -= count


def _read_fully(file: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``file``; fewer bytes only at the end of the file."""
    filled = 0
    while filled < len(view):
        count = file.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


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
