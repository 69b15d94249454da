"""The friend's work in hand: the outbox of frames being sent, one Blender session per job, backoff, caches.

Parts of ``frender.apps.friend`` (whose docstring tells the friend's whole story),
in a module of their own so each stays readable.
"""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio
from attrs import field, frozen
from attrs.validators import gt

from frender.apps import pack
from frender.apps.messages import (
    CropBox,
    Work,
)
from frender.blender import (
    BlenderCrashed,
    GuardRefused,
    NewerBlendFile,
    NotABlendFile,
    RenderedFrame,
    Window,
    start_session,
)
from frender.blender import Limits as RenderLimits
from frender.blender import Session as RenderSession

if TYPE_CHECKING:
    from frender.apps.friend import _Friend

__all__ = [
    "FILE_ERRORS", "GiB", "MAX_ERROR", "OUTBOX_SIZE", "SENDERS", "Backoff", "BlendCache", "FriendRefused", "FriendSettings", "JobRenderer", "Outbox",
    "Unworkable", "frames_text", "plainest",
]

GiB = 1 << 30

class FriendRefused(Exception):
    """The master will not have this friend (name taken, bad name, another key): retrying cannot help."""


@frozen(kw_only=True)
class FriendSettings:
    """How patient and how thrifty a friend is; the heartbeat interval is the master's to set."""

    reconnect_first: float = field(default=0.1, validator=gt(0))  # seconds before the first redial
    reconnect_max: float = field(default=2.0, validator=gt(0))  # the backoff doubles up to this
    call_deadline: float = field(default=10.0, validator=gt(0))  # one reply from the master or requester
    blend_cache_size: int = field(default=3, validator=gt(0))  # .blend files kept between tasks
    max_blend_size: int = field(default=4 * GiB, validator=gt(0))
    give_back_within: float = field(default=5.0, validator=gt(0))  # on the way out, shielded
    session_seconds: float = field(default=3600.0, validator=gt(0))  # one Blender process's whole life
    poll: float = field(default=1.0, validator=gt(0))  # seconds between looks at the pause file, schedule and idleness
    nice: int = 10  # Blender runs this much below normal priority (0: normal)
    max_memory: int | None = 8 * GiB  # Blender's address space, at most


OUTBOX_SIZE = 4  # frames saved but not yet sent, at most; then rendering waits
# Frames sent side by side, each sender over its own connection (opened by its first file): a small file's put is
# round trips, an fsync and the requester's commit, not bandwidth, so one sender alone holds back a run of crop
# checks (a window renders in a fraction of a frame's time).
SENDERS = 2
# Render errors that speak of the file, not of this machine (a timeout, a lack of memory or of a denoiser are
# this machine's): handed back with the task, so a file no friend can render ends with its reason.
FILE_ERRORS = (BlenderCrashed, NotABlendFile, GuardRefused, NewerBlendFile)
MAX_ERROR = 300


class Outbox:
    """Saved frames waiting to be sent, and the tasks they belong to.

    A frame is moved out of Blender's output folder, so the next task's
    render cannot remove or rewrite it before it has left; its task stays
    "kept" in every WantWork until it has.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.unsent: Counter[int] = Counter()
        self.changed = trio.Event()

    def tasks(self) -> set[int]:
        return set(self.unsent)

    async def post(self, send: trio.MemorySendChannel[tuple[int, RenderedFrame]], task: int, frame: RenderedFrame) -> None:
        self.count += 1
        moved = attrs.evolve(frame, path=self.root / f"{self.count:06d}-{frame.path.name}")
        os.replace(frame.path, moved.path)
        self.unsent[task] += 1
        try:
            await send.send((task, moved))
        except BaseException:
            self.sent(task, moved)
            raise

    def sent(self, task: int, frame: RenderedFrame) -> None:
        frame.path.unlink(missing_ok=True)
        self.unsent[task] -= 1
        if self.unsent[task] <= 0:
            del self.unsent[task]
        self.changed.set()
        self.changed = trio.Event()

    async def drained(self, task: int) -> None:
        """Return once every frame of ``task`` posted so far has been sent (or refused)."""
        while task in self.unsent:
            await self.changed.wait()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class JobRenderer:
    """One job's renders on this friend: its directory, its .blend copied in, one Blender session.

    The session opens with the job's first task and serves every later one;
    it is closed after a task that failed (the next task opens a fresh one,
    in a fresh job directory) and when the job is over for this friend.
    """

    def __init__(self, friend: _Friend, job: int) -> None:
        self.friend = friend
        self.job = job
        self.job_dir = friend.home / "jobs" / str(job)
        self.session: RenderSession | None = None
        self.noisy = False  # the session renders a denoised file's tiles noisy (Work.noisy)

    async def render(self, work: Work, on_frame: Callable[[RenderedFrame], Awaitable[None]]) -> None:
        """Render the task's frames, handing each to on_frame as Blender saves it."""
        if work.tiles and len(work.tiles) != len(work.deliver_as):
            raise Unworkable(f"task {work.task} names {len(work.tiles)} tiles and {len(work.deliver_as)} work units to deliver them as")
        if self.session is not None and (not self.session.alive or self.session.remaining < work.deadline or self.noisy != work.noisy):
            await self.close()
        if self.session is None:
            self.session = await self._open(work.deadline, noisy=work.noisy)
            self.noisy = work.noisy
        if work.tiles:  # a whole frame of a job in tiles: each tile in turn, delivered under its own work unit
            end = trio.current_time() + max(work.deadline, 0.0)
            for box, unit in zip(work.tiles, work.deliver_as, strict=True):
                await self._render(work.frames, _window(box), (unit,), on_frame, end - trio.current_time())
            return
        window = None if work.window is None else _window(work.window)
        await self._render(work.frames, window, work.deliver_as, on_frame, work.deadline)

    async def _render(
        self, frames: tuple[int, ...], window: Window | None, deliver_as: tuple[int, ...], on_frame: Callable[[RenderedFrame], Awaitable[None]],
        seconds: float,
    ) -> None:
        assert self.session is not None
        if deliver_as:  # a tile: its render is delivered under its work unit's number
            named = dict(zip(frames, deliver_as))
            deliver = on_frame

            async def on_frame(frame: RenderedFrame) -> None:
                await deliver(attrs.evolve(frame, frame=named.get(frame.frame, frame.frame)))

        await self.session.render(frames, on_frame=on_frame, wall_seconds=max(seconds, 0.0), window=window)

    async def _open(self, deadline: float, *, noisy: bool = False) -> RenderSession:
        friend = self.friend
        shutil.rmtree(self.job_dir, ignore_errors=True)
        self.job_dir.mkdir(parents=True)
        blend = self.job_dir / "scene.blend"
        sha256 = friend.jobs[self.job].signed.assignment.blend_sha256
        async with friend.cache.use(sha256, partial(friend._fetch_blend, self.job, sha256)) as cached:
            # Copied, not hard-linked: the render may write in its job dir, and
            # through a link it could change the cached file under later jobs.
            await trio.to_thread.run_sync(shutil.copyfile, cached, blend)
        with open(blend, "rb") as file:
            head = file.read(len(pack.MAGIC))
        if pack.is_manifest(head):  # a packed job tree: the assignment named its manifest
            blend = await self._lay_out_tree(blend)
        # Long enough for this task at least, or every task would reopen it.
        settings = friend.settings
        limits = RenderLimits(wall_seconds=max(settings.session_seconds, deadline), memory_bytes=settings.max_memory, nice=settings.nice)
        return await start_session(friend.backend, blend, self.job_dir, threads=friend.threads, limits=limits, noisy=noisy)

    async def _lay_out_tree(self, manifest_path: Path) -> Path:
        """Fetch each file of the job's tree (each checked against the manifest's sha256) and copy it in."""
        friend = self.friend
        try:
            manifest = pack.read_manifest(manifest_path.read_bytes())
        except ValueError as exc:
            raise Unworkable(f"the job tree is unusable: {exc}") from None
        root = self.job_dir / "tree"
        for entry in manifest.files:
            async with friend.files.use(entry.sha256, partial(friend._fetch_blend, self.job, entry.sha256)) as cached:
                dest = root / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                await trio.to_thread.run_sync(shutil.copyfile, cached, dest)
        return root / manifest.main

    async def close(self) -> None:
        """End the session, if one is open (shielded: Blender is stopped even while cancelled)."""
        session, self.session = self.session, None
        if session is not None:
            with trio.CancelScope(shield=True):
                await session.aclose()

    async def finish(self) -> None:
        """The job is over for this friend: end the session and remove the job directory."""
        await self.close()
        shutil.rmtree(self.job_dir, ignore_errors=True)


class Unworkable(Exception):
    """This friend cannot work on the job at all (e.g. its .blend is too large)."""


class Backoff:
    """Redial delays: doubling from ``reconnect_first`` up to ``reconnect_max``, each jittered down to
    half, so friends that lost the same master do not all redial it at the same moment."""

    def __init__(self, settings: FriendSettings) -> None:
        self.first = settings.reconnect_first
        self.cap = settings.reconnect_max
        self.delay = self.first

    @property
    def first_try(self) -> bool:
        """Whether this is the first failure since the link last worked (log it, not every retry)."""
        return self.delay == self.first

    def reset(self) -> None:
        self.delay = self.first

    async def sleep(self) -> None:
        await trio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self.cap)


class BlendCache:
    """Job .blend files by sha256 in ``root``, at most ``size`` of them; the oldest unused go first."""

    def __init__(self, root: Path, size: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".*.part"):  # an interrupted download
            leftover.unlink(missing_ok=True)
        self.root = root
        self.size = size
        self.users: Counter[str] = Counter()
        self._fetching = trio.Lock()  # one download at a time: no file is fetched twice

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.blend"

    @asynccontextmanager
    async def use(self, sha256: str, fetch: Callable[[Path], Awaitable[None]]) -> AsyncIterator[Path]:
        """The cached file, fetched with ``fetch(dest)`` if missing; not evicted while in use."""
        self.users[sha256] += 1
        try:
            async with self._fetching:
                path = self.path(sha256)
                if path.exists():
                    os.utime(path)  # the eviction order is the order of use
                else:
                    await fetch(path)
                    self._evict()
            yield path
        finally:
            self.users[sha256] -= 1
            if not self.users[sha256]:
                del self.users[sha256]

    def drop(self, sha256: str) -> None:
        """Forget a job's file (its job is over), unless a task is using it."""
        if sha256 not in self.users:
            self.path(sha256).unlink(missing_ok=True)

    def _evict(self) -> None:
        cached = sorted(self.root.glob("*.blend"), key=lambda path: path.stat().st_mtime_ns)
        unused = [path for path in cached if path.stem not in self.users]
        for path in unused[: max(len(cached) - self.size, 0)]:
            path.unlink(missing_ok=True)


def _window(box: CropBox) -> Window:
    return Window(left=box.left, top=box.top, width=box.width, height=box.height, in_place=box.in_place, lossless=box.lossless)


def plainest(group: BaseExceptionGroup) -> BaseException:
    """What a caller should see of a nursery's group: its only exception, or Ctrl-C if one was pressed."""
    found = list(_leaves(group))
    if len(found) == 1:
        return found[0]
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
        return KeyboardInterrupt()
    return group


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def frames_text(frames: Iterable[int]) -> str:
    """Frames for a log line: "1-4" for a run of three or more, else "1, 3, 7"."""
    frames = list(frames)
    if len(frames) > 2 and frames == list(range(frames[0], frames[-1] + 1)):
        return f"{frames[0]}-{frames[-1]}"
    return ", ".join(map(str, frames))
