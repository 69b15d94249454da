"""File bodies on the wire: streamed to disk in large chunks, hashed on the way, renamed when proven.

Rule 1: bytes land in a temporary ``.{name}.*.part`` file beside the
        destination; only a body of exactly the announced size and sha256 is
        fsynced and renamed into place. Anything else deletes the temporary
        file, so nothing that looks complete is ever left behind.
Rule 2: the receiver reads exactly the announced size, which the caller has
        already capped, so the size limit holds while reading, not after.
Rule 3: memory stays flat: at most three chunks (Limits.chunk_size) are held:
        one being received, one queued, one being written. Disk writes and
        hashing run in a worker thread (hashlib and file writes release the
        GIL), one call per chunk to keep Python overhead low.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

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
            digest = await _receive_into(channel, header.size, file)
        if digest != header.sha256:
            raise HashMismatch(f"header says sha256 {header.sha256}, the bytes hash to {digest}")
        await trio.to_thread.run_sync(os.replace, temp, destination)
    finally:
        temp.unlink(missing_ok=True)


async def _receive_into(channel: Channel, size: int, file: BinaryIO) -> str:
    """Read exactly ``size`` bytes into ``file``, fsync it, and return their sha256 hex."""
    digest = hashlib.sha256()
    chunk_size = channel.limits.chunk_size
    # The network and the disk work at once: while a worker thread hashes and
    # writes one chunk, this task receives the next (Rule 3 allows two).
    send_chunk, receive_chunk = trio.open_memory_channel[bytes](1)

    async def write_chunks() -> None:
        async with receive_chunk:
            async for chunk in receive_chunk:
                await trio.to_thread.run_sync(_write_and_hash, file, digest, chunk)

    with trio.move_on_after(body_deadline(channel, size)) as scope, single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_chunks)
            async with send_chunk:
                remaining = size
                pieces: list[bytes] = []
                pending = 0
                while remaining:
                    data = await channel.receive_some(min(remaining, chunk_size - pending))
                    if not data:
                        raise PeerGone(f"peer closed after {size - remaining} of {size} bytes")
                    remaining -= len(data)
                    pieces.append(data)
                    pending += len(data)
                    if pending >= chunk_size or not remaining:
                        await send_chunk.send(b"".join(pieces))
                        pieces.clear()
                        pending = 0
        await trio.to_thread.run_sync(_flush_and_sync, file)
    if scope.cancelled_caught:
        raise PeerGone(f"file of {size} bytes not received within {body_deadline(channel, size):g} s")
    return digest.hexdigest()


def _write_and_hash(file: BinaryIO, digest: "hashlib._Hash", chunk: bytes) -> None:
    digest.update(chunk)
    file.write(chunk)


def _flush_and_sync(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())


async def send_file(channel: Channel, path: Path, size: int) -> None:
    """Send exactly ``size`` bytes of ``path``, reading ahead in a thread."""
    chunk_size = channel.limits.chunk_size
    with open(path, "rb", buffering=0) as file:
        remaining = size
        while remaining:
            chunk = await trio.to_thread.run_sync(file.read, min(chunk_size, remaining))
            if not chunk:
                raise OSError(f"{path} shrank while being sent")
            await channel.send_bytes(chunk, channel.limits.message_deadline)
            remaining -= len(chunk)


def describe(path: Path, chunk_size: int = 1 << 20) -> tuple[int, str]:
    """Size and sha256 hex of the file at ``path`` (blocking: run it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
