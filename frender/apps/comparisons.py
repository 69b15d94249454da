"""Where the requester decodes and compares pixels: worker processes, never the event loop's process.

A 1080p frame takes tens of milliseconds to inflate and compare, and holds
tens of megabytes while it does. In the event loop's process that time holds
the GIL the loop needs, and each thread's buffers stay in its own malloc
arena. So comparisons run in a pool of processes, one per core (what
``_compare``'s decode limit allowed at once before), started when the first
comparison is owed; the loop only waits, and keeps no pixel.

Workers are started by a fork server (a clean process, not a fork of the
loop's threads). A worker compares one pair at a time on one thread, so its
buffers live in one malloc arena, reused from one comparison to the next.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from frender import blender

__all__ = ["ComparePool", "compare_copies"]

T = TypeVar("T")


class ComparePool:
    """A process pool that trio awaits without a thread per call; ``close`` ends its workers.

    ``shared()`` is the process's one pool: comparisons hold no state, so every node of a process (tests run many)
    shares its workers.
    """

    _shared: ComparePool | None = None

    @classmethod
    def shared(cls) -> ComparePool:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self, workers: int | None = None) -> None:
        """``workers`` processes (one per core by default); 0: a thread of this process instead (tests that watch the comparator)."""
        self.workers = max(1, os.cpu_count() or 1) if workers is None else workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            self._executor = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
        return self._executor

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker process (both picklable); its exception is raised here. Cancelled: not started, or abandoned."""
        if self.workers == 0:
            return await trio.to_thread.run_sync(fn, *args)
        future = self._started().submit(fn, *args)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:
            self.close()  # a worker died (killed, out of memory): the next call starts a fresh pool
            raise

    async def warm(self) -> None:
        """Start every worker now (each imports the comparator as it starts), so that a requester's first checks wait for
        no process start: started on demand, the pool took 0.4 to 1.5 s before the first comparison of a fresh requester
        (on a loaded 2-core machine), after the check's own render was done (bench/tiles.py's timeline)."""
        if self.workers == 0:
            return
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):  # submitted in one tick, so each finds no idle worker and starts one
                    nursery.start_soon(self.run, _ready)
        except* concurrent.futures.process.BrokenProcessPool:
            pass  # the first comparison starts a fresh pool, as after any worker's death

    def pids(self) -> list[int]:
        """The worker processes' ids (the benchmark adds their CPU to the requester's)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return list(processes)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _ready() -> int:
    """A worker's answer once it runs (its module, the comparator's, imported)."""
    return os.getpid()


def compare_copies(
    a: Path, b: Path, against: str, crop: tuple[blender.Window, blender.Window] | None, fmt: blender.OutputFormat, width: int, height: int,
    pad: int, align: int, min_fraction: float = blender.MIN_WINDOW_FRACTION,
) -> blender.Comparison:
    """Compare two stored copies (in a worker): whole frames in the job's own format, or a crop check's window (8-bit PNG
    jobs: the subject's copy is its whole frame, the verifier's and the requester's are the padded box, compared in its
    centre; a tile's: of the tile, or of the frame it is rendered in place in). Each copy's image data is bounded
    (``blender.check_frame_bytes``) before it is decoded: arrival checked
    only its container, so a copy that does not decode is found here (BadImage)."""
    if crop is None:
        return blender.compare_output(a, b, fmt, width=width, height=height)
    box, rendered = crop
    whole, part = (width, height), (rendered.width, rendered.height)
    sizes = {"pair": (whole, part), "subject": (part, whole)}.get(against, (part, part))
    for path, (w, h) in zip((a, b), sizes):
        blender.check_frame_bytes(path, "PNG", w, h)
    if against == "pair":  # a: the subject's frame, b: the verifier's (or our own) crop
        return blender.compare_window(a, b, box, width=width, height=height, pad=pad, align=align, min_fraction=min_fraction)
    if against == "subject":  # a: our own crop, b: the subject's frame
        return blender.compare_window(b, a, box, width=width, height=height, pad=pad, align=align, min_fraction=min_fraction)
    one, two = (blender.decode_png(p, width=rendered.width, height=rendered.height) for p in (a, b))  # two crops
    return blender.compare_pixels(box.of(one, rendered), box.of(two, rendered))
