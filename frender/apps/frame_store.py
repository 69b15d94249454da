"""The requester's frame store: files named from ids, hashed once, put and got, never changed.

Files on disk are named from ids only: ``jobs/{job}/job.blend``,
``jobs/{job}/copies/{task}-{frame}.{ext}``, ``jobs/{job}/own/{check}.{ext}`` (ext:
the file's output format), ``uploads/{sha256}.blend``. A frame is on disk
(fsynced, renamed) before the event that accepts it is committed; a stored copy
is checked against its logged sha256 whenever it is served or compared.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps.requester_events import crop_boxes
from frender.apps.uploads import is_sha256
from frender.core import job as core
from frender.transports import (
    FileHeader,
    Peer,
    Refused,
)

log = logging.getLogger("frender.requester")


class FrameStore:
    """The requester's files (a part of ``RequesterNode``): paths, puts and gets, hashes."""

    def _job_dir(self, job: int) -> Path:
        return self.home / "jobs" / str(job)

    def _extension(self, job: int) -> str:
        accepted = self.jobs.get(job)
        return ".png" if accepted is None else accepted.output.extension

    def _copy_path(self, job: int, task: int, frame: int) -> Path:
        return self._job_dir(job) / "copies" / f"{task}-{frame}{self._extension(job)}"

    def _own_path(self, job: int, check: int) -> Path:
        return self._job_dir(job) / "own" / f"{check}{self._extension(job)}"

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
            await self._bound_frame(header, friend, task)
            # Each put has a file of its own; put_done links it to the copy's name only once it is accepted.
            return self._copy_path(header.job, task, header.frame).with_suffix(f".{secrets.token_hex(8)}.put")
        raise Refused("not-accepted", f"no {header.kind} is accepted for job {header.job!r}")

    async def _bound_frame(self, header: FileHeader, friend: str, task: int) -> None:
        """Refuse a frame larger than its job's format can need, before a byte is stored: a bad frame (a fault, as today)."""
        accepted = self.jobs[header.job]
        crop = crop_boxes(core.window_of(self.state, header.job, task), accepted)
        width, height = (accepted.width, accepted.height) if crop is None else (crop[1].width, crop[1].height)
        out = accepted.output
        bound = blender.max_frame_bytes(out.file_format, out.color_depth, out.color_mode, width, height)
        if header.size <= bound:
            return
        reason = f"a {width}x{height} {out.describe()} frame takes at most {bound} bytes; this one announced {header.size}"
        try:  # the core treats it as it treats any frame that does not decode
            await self.apply(
                core.DeliverFrame(
                    job=header.job, friend=friend, task=task, frame=header.frame, ok=False, reason=reason, entropy=self._entropy(), now=self._now()
                )
            )
        except Refused:
            pass
        raise Refused("frame-too-large", f"{reason}: render the job's own format and size, and send the image alone")

    async def put_done(self, peer: Peer, header: FileHeader, path: Path) -> object:
        if header.kind == "upload":
            self.uploads.arrived(peer.fingerprint, header.sha256, header.size)  # hers now: it counts while its file is here
            return msg.Ok()
        try:
            return await self._frame_done(peer, header, path)
        finally:
            path.unlink(missing_ok=True)

    async def _frame_done(self, peer: Peer, header: FileHeader, path: Path) -> msg.FrameStored:
        """Decode the put's own file, link it to the copy's name (never over an accepted copy), then deliver."""
        job = header.job
        task = int(path.name.split("-")[0])
        friend = core.task_friend(self.state, job, task) or ""
        if friend not in self._friends_of(peer, job):
            raise Refused("not-yours", f"task {task} of job {job} is not one of your friends'")
        accepted = self.jobs[job]
        ok, reason = True, ""
        crop = crop_boxes(core.window_of(self.state, int(job), task), accepted)
        width, height = (accepted.width, accepted.height) if crop is None else (crop[1].width, crop[1].height)
        try:
            await trio.to_thread.run_sync(lambda: blender.decode_output(path, accepted.output, width=width, height=height))
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
            final = core.final_copy(self.state, job, header.frame)
            if final is None:
                raise Refused("not-final", f"frame {header.frame} of job {job} is not final yet")
            return await self._checked(self.copies[(job, final.sha256)], final.sha256)
        raise Refused("unsupported", f"no {header.kind} files are served")

    def final_path(self, job: int, frame: int) -> Path | None:
        """The stored copy of a final frame; None while it is not final."""
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
