"""The requester's heap: buffers freed after a frame arrives go back to the system, not to a thread's arena.

Each arriving frame passes through megabyte buffers (decrypted pieces, file
reads for hashing) allocated on trio's worker threads. glibc gives each thread
an arena of its own (up to eight per core) and, once a large buffer is freed,
raises its mmap threshold so the next ones come from those arenas, which keep
what was freed: measured at 1,000 friends, a dozen arenas held 15-40 MB each.
So the requester caps the arenas at two, fixes the mmap threshold (buffers of
128 KiB and more are mapped and unmapped whole), and trims the arenas' free
pages every few seconds. Elsewhere than glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import trio

__all__ = ["bound_heap", "trim_forever"]

log = logging.getLogger("frender.requester")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_heap() -> bool:
    """Two arenas, a fixed 128 KiB mmap threshold and a 1 MiB trim threshold (before the process starts threads);
    False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 128 * 1024), (M_TRIM_THRESHOLD, 1 << 20),
    ))  # fmt: skip


async def trim_forever(every: float = 5.0) -> None:
    """Hand the arenas' free pages back to the system every ``every`` seconds (glibc's malloc_trim, on a worker thread)."""
    libc = _libc()
    if libc is None:
        return
    while True:
        await trio.sleep(every)
        await trio.to_thread.run_sync(libc.malloc_trim, 0)
