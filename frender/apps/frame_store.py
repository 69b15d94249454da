"""The requester's frame store: files named from ids, hashed once, put and got, never changed.

Files on disk are named from ids only: ``jobs/{job}/job.blend``,
``jobs/{job}/copies/{task}-{frame}.{ext}``, ``jobs/{job}/own/{check}.{ext}`` (ext:
the file's output format), ``uploads/{sha256}.blend``. A frame is on disk
(fsynced, renamed) before the event that accepts it is committed; a stored copy
is checked against its logged sha256 whenever it is served or compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps import tiles
from frender.apps.uploads import is_sha256
from frender.apps.requester_room import Room
from frender.core import job as core
from frender.transports import (
    FileHeader,
    Peer,
    Refused,
)

log = logging.getLogger("frender.requester")


class FrameStore(Room):
    """The requester's files (a part of ``RequesterNode``): paths, puts and gets, hashes."""

    def _unit_view(self, job: int, unit: int, task: int) -> tiles.UnitView:
        """What a task's frame (a tile's work unit) renders and holds: its image's size, its crop window."""
        return tiles.unit_view(core.tile_grid(self.state, job), self.jobs[job], unit, core.window_of(self.state, job, task))

    def _job_dir(self, job: int) -> Path:
        return self.home / "jobs" / str(job)

    def _unit_output(self, job: int) -> blender.OutputFormat:
        """The format of a work unit's image: the job's own, or a tile's (``tiles.unit_output``); a job accepted and not
        yet started in the core (its ``StartJob`` follows its acceptance) is read as the artist's own format."""
        tiled = job in core.job_numbers(self.state) and core.tile_grid(self.state, job) is not None
        return tiles.unit_output(self.jobs[job], tiled)

    def _extension(self, job: int) -> str:
        return ".png" if job not in self.jobs else self._unit_output(job).extension

    def _copy_path(self, job: int, task: int, frame: int) -> Path:
        return self._job_dir(job) / "copies" / f"{task}-{frame}{self._extension(job)}"

    def _own_path(self, job: int, check: int, *, whole: bool = False) -> Path:
        """The requester's own render for ``check``: its window (or whole test frame), or ``whole``, the whole frame of a crop check (Rule 19)."""
        return self._job_dir(job) / "own" / f"{check}{'-frame' if whole else ''}{self._extension(job)}"

    def _upload_path(self, sha256: str) -> Path:
        return self.uploads.path(sha256)

    def _friends_of(self, peer: Peer, job: int) -> list[str]:
        """The job's friends whose key the peer proved: one owner may run several friends with one key."""
        mine = [friend for friend, key in self.keys.get(job, {}).items() if key == peer.fingerprint]
        if not mine:
            raise Refused("not-assigned", f"your key is not a friend of job {job} here")
        return mine

    def _sender_of(self, peer: Peer, job: int, frame: int) -> tuple[str, int]:
        """The friend, of those the peer's key proves, whose live task waits for ``frame``; and that task.

        The key proves the owner; the task (the friend's name holds it) picks the friend among that owner's friends.
        """
        for friend in self._friends_of(peer, job):
            task = core.holder_of(self.state, job, friend, frame)
            if task is not None:
                return friend, task
        raise Refused("not-yours", f"frame {frame} of job {job} is not in a task you hold")

    async def _account_of(self, peer: Peer) -> msg.AccountInfo:
        """The peer's account as the master knows it; refused unless it exists and holds enough points."""
        account = await self._ask_master(msg.AccountOf(key=peer.fingerprint), retry=False)
        if not account.user:
            raise Refused("no-account", "your key holds no account: bind a username first (frender account create NAME --master ...)")
        if account.balance < self.settings.upload_balance:
            raise Refused("short-balance", f"{account.user} has {account.balance} points; a job needs at least {self.settings.upload_balance}")
        return account

    def _expire_uploads(self) -> None:
        """Delete uploads older than upload_ttl (a submitted job holds its own link to its file)."""
        # File times are wall-clock times; an open put counts until its body is due (trio time).
        self.uploads.expire(self.clock() - self.settings.upload_ttl, trio.current_time())

    async def accept_put(self, peer: Peer, header: FileHeader) -> Path:
        if header.kind == "upload":
            if header.job != header.sha256 or not is_sha256(header.sha256):
                raise Refused("bad-upload", "an upload is named by its own sha256 (64 lowercase hex digits)")
            await self._account_of(peer)  # before a byte is stored: anonymous or penniless keys upload nothing
            self._expire_uploads()
            now = trio.current_time()
            used = self.uploads.used(peer.fingerprint, now, besides=header.sha256)
            if used + header.size > self.settings.upload_quota:
                raise Refused("quota", f"your uploads here hold {used} bytes; the quota is {self.settings.upload_quota}")
            # Reserved now, so concurrent puts cannot pass the quota together; the transport's body deadline bounds the wait.
            self.uploads.reserve(peer.fingerprint, header.sha256, header.size, now + 2 * self.limits.message_deadline + header.size / self.limits.min_file_rate)
            path = self._upload_path(header.sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        if header.kind == "frame" and isinstance(header.job, int) and header.job in self.jobs:
            self._friends_of(peer, header.job)
            if core.is_finished(self.state, header.job):  # before a byte is sent: a finished or cancelled job takes no frames
                raise Refused("job-over", f"{self._over(header.job)}: frames of job {header.job} are no longer taken")
            friend, task = self._sender_of(peer, header.job, header.frame)
            self._heard_from(header.job, friend)
            await self._bound_frame(header, header.job, friend, task)
            # Each put has a file of its own; put_done links it to the copy's name only once it is accepted.
            return self._copy_path(header.job, task, header.frame).with_suffix(f".{secrets.token_hex(8)}.put")
        raise Refused("not-accepted", f"no {header.kind} is accepted for job {header.job!r}")

    async def _bound_frame(self, header: FileHeader, job: int, friend: str, task: int) -> None:
        """Refuse a frame larger than its job's format can need, before a byte is stored: a bad frame (a fault, as today)."""
        width, height = self._unit_view(job, header.frame, task).rendered_size
        out = self._unit_output(job)
        bound = blender.max_frame_bytes(out.file_format, out.color_depth, out.color_mode, width, height)
        if header.size <= bound:
            return
        reason = f"a {width}x{height} {out.describe()} frame takes at most {bound} bytes; this one announced {header.size}"
        try:  # the core treats it as it treats any frame that does not decode
            await self.apply(
                core.DeliverFrame(
                    job=job, friend=friend, task=task, frame=header.frame, ok=False, reason=reason, entropy=self._entropy(), now=self._now()
                )
            )
        except Refused:
            pass
        raise Refused("frame-too-large", f"{reason}: render the job's own format and size, and send the image alone")

    def receiving(self, peer: Peer, header: FileHeader) -> contextlib.AbstractAsyncContextManager[object]:
        """Frame bodies take turns (``RequesterSettings.frame_bodies``); uploads, bounded by quotas, do not wait."""
        if header.kind != "frame":
            return contextlib.nullcontext()
        return self._bodies.turn(peer.fingerprint, first=self._closes_batches(peer, header))

    def _closes_batches(self, peer: Peer, header: FileHeader) -> bool:
        """Whether the put is a check's render (a crop or a whole frame): its body goes before frames (``Turns``)."""
        if not isinstance(header.job, int) or header.job not in self.jobs:
            return False
        try:
            _, task = self._sender_of(peer, header.job, header.frame)
        except Refused:
            return False
        return core.is_check_task(self.state, header.job, task)

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        if header.kind == "upload":
            self.uploads.arrived(peer.fingerprint, header.sha256, header.size)  # hers now: it counts while its file is here
            return msg.Ok()
        try:
            return await self._frame_done(peer, header, path)
        finally:
            path.unlink(missing_ok=True)

    async def _frame_done(self, peer: Peer, header: FileHeader, path: Path) -> msg.FrameStored:
        """Check the put's own file (its container and size), link it to the copy's name (never over an accepted copy), then deliver."""
        job = header.job
        if not isinstance(job, int):  # accept_put takes frames of its own jobs only, named by number
            raise Refused("not-accepted", f"no frame is accepted for job {job!r}")
        task = int(path.name.split("-")[0])
        friend = core.task_friend(self.state, job, task) or ""
        if friend not in self._friends_of(peer, job):
            raise Refused("not-yours", f"task {task} of job {job} is not one of your friends'")
        out = self._unit_output(job)
        ok, reason = True, ""
        width, height = self._unit_view(job, header.frame, task).rendered_size
        try:  # the container only: pixels are decoded where a comparison needs them, in a worker process (``comparisons``)
            await trio.to_thread.run_sync(lambda: blender.check_output(path, out, width=width, height=height))
        except blender.BadImage as exc:
            ok, reason = False, str(exc)
        target = self._copy_path(job, task, header.frame)
        linked = False
        if ok:
            # Nothing serves or compares this link before the commit: copies are found through the log (self.copies),
            # and the link is removed again if the core does not accept the delivery.
            try:
                os.link(path, target)
            except FileExistsError:
                if target in self.copies.values():
                    raise Refused("already-stored", f"frame {header.frame} of task {task} is stored; an accepted copy is never replaced") from None
                os.replace(path, target)  # debris of a crash between link and commit: no event names it
            linked = True
        try:
            decided = await self.apply(
                core.DeliverFrame(
                    job=job, friend=friend, task=task, frame=header.frame, sha256=header.sha256, ok=ok, reason=reason,
                    entropy=self._entropy(), now=self._now(),
                )
            )
        except BaseException:
            if linked:
                target.unlink(missing_ok=True)
            raise
        if linked:
            if any(isinstance(e, core.CopyReceived) and e.sha256 == header.sha256 for e in decided):
                self._remember_hash(target, header.sha256)  # the transport hashed these bytes as they arrived
            else:
                target.unlink(missing_ok=True)
        return msg.FrameStored(frame=header.frame, ok=ok, reason=reason)

    def _remember_hash(self, path: Path, sha256: str, info: os.stat_result | None = None) -> None:
        """Cache what this version of ``path`` (inode, size, mtime) hashes to; a changed file misses the cache."""
        info = info or path.stat()
        if len(self._verified) >= 4096:
            del self._verified[next(iter(self._verified))]
        self._verified[(path, info.st_ino, info.st_size, info.st_mtime_ns)] = sha256

    async def _checked(self, path: Path, sha256: str) -> Path:
        """``path``, once its bytes are proven to hash to the logged ``sha256``; else a refusal (never served or compared)."""
        try:
            info = path.stat()
        except FileNotFoundError:
            raise Refused("missing", f"{path.name} is gone from the requester's disk") from None
        actual = self._verified.get((path, info.st_ino, info.st_size, info.st_mtime_ns))
        if actual is None:
            actual = await trio.to_thread.run_sync(_sha256_of, path)
            self._remember_hash(path, actual, info)
        if actual != sha256:
            log.error("%s hashes to %s, the log says %s: not served", path, actual, sha256)
            raise Refused("corrupt", f"the stored {path.name} is not the file the log accepted")
        return path

    async def open_get(self, peer: Peer, header: FileHeader) -> Path:
        job = header.job
        if not isinstance(job, int) or job not in self.jobs:
            raise Refused("unknown-job", f"no job {job!r} here")
        if header.kind == "blend":
            self._friends_of(peer, job)
            accepted = self.jobs[job]
            if accepted.tree_main and header.sha256 and header.sha256 != accepted.blend_sha256:
                if header.sha256 not in self._tree_files(job):  # a file of the job's tree, and nothing else
                    raise Refused("not-in-tree", f"no file {header.sha256} in job {job}'s tree")
                return await self._checked(self._tree_file(job, header.sha256), header.sha256)
            return await self._checked(self._job_dir(job) / "job.blend", accepted.blend_sha256)
        if header.kind == "frame":
            self._own_job(peer, job)
            if core.tile_grid(self.state, job) is not None:  # a still in tiles: its frame stitched from its final tiles
                return await self._stitched(job, header.frame)
            final = core.final_copy(self.state, job, header.frame)
            if final is None:
                raise Refused("not-final", f"frame {header.frame} of job {job} is not final yet")
            return await self._checked(self.copies[(job, final.sha256)], final.sha256)
        raise Refused("unsupported", f"no {header.kind} files are served")

    def final_path(self, job: int, frame: int) -> Path | None:
        """The stored copy of a final frame; None while it is not final (a still in tiles: its stitch, once made)."""
        if core.tile_grid(self.state, job) is not None:
            return self._stitched_path(job, frame)
        final = core.final_copy(self.state, job, frame)
        return None if final is None else self.copies[(job, final.sha256)]

    def job_dir(self, job: int) -> Path:
        return self._job_dir(job)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


RANKS_KEPT = 4096  # keys whose place in the turns is remembered (``Turns``)


class Turns:
    """At most ``total`` holders at once and ``per_key`` of one key. A freed turn goes to the waiting put that ranks first:

    1. a check's body (``first``) before a frame's: it closes batches, whose frames become final only once checked;
    2. then the key first served earliest (stickiness): a friend already
       sending keeps sending, so its batch of frames fills and is checked, where turns taken strictly in order spread
       what the requester accepts over every friend and no batch fills for minutes. The keys served grow only while a
       turn is free and no served key waits: as many friends as the requester can take at their pace;
    3. then first come, first served.

    The per-key bound keeps one friend's links (a slow drip over each) from holding every turn: taking them all
    takes ``total / per_key`` keys, each a friend granted to the job. A key keeps its place between its puts (a friend
    sends as it renders, with gaps); of more than ``RANKS_KEPT`` keys, the one served least recently is forgotten.
    """

    def __init__(self, total: int, per_key: int) -> None:
        self.per_key = per_key
        self._free = total
        self._keys: dict[str, list[int]] = {}  # key -> [turns held, puts holding or waiting]
        self._waiting: list[_Waiter] = []
        self._ranks: dict[str, int] = {}  # key -> the order it was first served in, least recently served first
        self._served = 0  # ranks given
        self._arrived = 0

    @contextlib.asynccontextmanager
    async def turn(self, key: str, *, first: bool = False) -> AsyncIterator[None]:
        entry = self._keys.setdefault(key, [0, 0])
        entry[1] += 1
        try:
            if self._free and entry[0] < self.per_key:  # a waiting put that could take this turn would have been given it
                self._grant(key)
            else:
                self._arrived += 1
                waiter = _Waiter(key, first, self._arrived)
                self._waiting.append(waiter)
                try:
                    await waiter.event.wait()
                except BaseException:
                    if not waiter.event.is_set():
                        self._waiting.remove(waiter)
                    else:  # given the turn as it was cancelled: give it on
                        self._give(key)
                    raise
            try:
                yield
            finally:
                self._give(key)
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._keys[key]

    def _grant(self, key: str) -> None:
        entry = self._keys[key]
        entry[0] += 1
        self._free -= 1
        rank = self._ranks.pop(key, None)
        if rank is None:
            rank, self._served = self._served, self._served + 1
            if len(self._ranks) >= RANKS_KEPT:  # the key served least recently leaves
                del self._ranks[next(iter(self._ranks))]
        self._ranks[key] = rank

    def _give(self, key: str) -> None:
        self._keys[key][0] -= 1
        self._free += 1
        while self._free and self._waiting:
            ready = [w for w in self._waiting if self._keys[w.key][0] < self.per_key]
            if not ready:
                return
            chosen = min(ready, key=self._rank)
            self._waiting.remove(chosen)
            self._grant(chosen.key)
            chosen.event.set()

    def _rank(self, waiter: _Waiter) -> tuple[bool, int, int]:
        return (not waiter.first, self._ranks.get(waiter.key, self._served), waiter.arrived)


class _Waiter:
    __slots__ = ("arrived", "event", "first", "key")

    def __init__(self, key: str, first: bool, arrived: int) -> None:
        self.key, self.first, self.arrived = key, first, arrived
        self.event = trio.Event()
