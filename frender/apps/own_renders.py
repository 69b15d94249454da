"""The requester's own work: comparing two stored copies, and rendering a frame with its own Blender.

Comparisons run in a worker process (``comparisons``) on decoded pixels (whole
frames or tiles in the job's own format, or a crop check's window). Own renders
run ``own_renders_at_once`` at a time (one by default, since the requester's CPU
is shared), each in a Blender session held for the job like a friend's
(``frender.apps.friend_work.JobRenderer``): a spot check's window costs its
render, not a Blender start and a file load each. A job's sessions end with the
job (``close_own_session``, from its report) or after a failed render (the next
opens a fresh one). A still's tile windows are rendered ahead, as soon as their
checks are drawn (``_prerender``).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from concurrent.futures.process import BrokenProcessPool

import attrs
import trio

from frender import blender
from frender.apps import pack
from frender.apps import tiles
from frender.apps.comparisons import compare_copies
from frender.apps.requester_room import Room
from frender.core import job as core
from frender.transports import (
    Refused,
    file_header,
)

log = logging.getLogger("frender.requester")

OWN_SESSION_SECONDS = 3600.0  # one Blender session's whole life, at least (as a friend's)


class OwnRenders(Room):
    """Comparisons and own renders (a part of ``RequesterNode``)."""

    _admitting: bool | None  # whether friends get frames now (Rule 21); None: read it again
    _held_back: bool  # it was False when last read
    _own_timed: set[bool]  # which paces are timed, not guessed

    def _admits(self) -> bool:
        """Rule 21 of the core: whether friends get more frames to render. Not while our own renders, those owed and
        those the frames out with friends will need (``core.own_renders_ahead``), would take longer than
        ``own_backlog`` seconds at the pace ours have run: so a frame the requester takes becomes final within about
        that time, however many friends it has (their frames' checks wait on our renders)."""
        if self._admitting is None:  # read once per commit: every idle friend's ask reads it
            owed, at_once = self.owed.own_renders, max(1, self.settings.own_renders_at_once)
            pace = self._own_pace
            ahead = core.own_renders_ahead(self._draft)  # with the frames handed out in this commit
            backlog = (sum(pace[r.purpose == core.Purpose.FRAME] for r in owed.values()) + ahead * pace[False]) / at_once
            self._admitting = len(owed) + ahead <= at_once or backlog <= self.settings.own_backlog  # what renders now waits not
            self._held_back = not self._admitting
        return self._admitting

    def _paced(self, whole: bool, seconds: float) -> None:
        """Keep the pace of our own renders (windows and whole frames apart): a moving average of the last few, the
        first timing (a render, or a file's measurement at submit) replacing the guess it started from."""
        if seconds <= 0:
            return
        pace = self._own_pace
        pace[whole] = 0.8 * pace[whole] + 0.2 * seconds if whole in self._own_timed else seconds
        self._own_timed.add(whole)
        self._admitting = None

    async def _compare(self, event: core.OwedComparison) -> None:
        accepted = self.jobs[event.job]
        try:  # never compare a copy that is not, byte for byte, the one the log accepted
            a = await self._checked(self.copies[(event.job, event.a_sha256)], event.a_sha256)
            b = await self._checked(self.copies[(event.job, event.b_sha256)], event.b_sha256)
        except Refused as exc:  # our own disk, not a friend, is at fault: owed still, retried with backoff
            log.error("job %d: check %d not compared: %s", event.job, event.check, exc.reason)
            return
        check = core.check_of(self.state, event.job, event.check)
        # Rule 19: the requester's whole frame against the subject's is a whole-frame (or whole-tile) comparison, window or not.
        window = None if event.against == core.Against.FRAME or check is None else check.window
        view = tiles.unit_view(core.tile_grid(self.state, event.job), accepted, check.frame if check is not None else 0, window)
        try:
            result = await self.comparisons.run(
                compare_copies, a, b, event.against, view.crop, self._unit_output(event.job), view.width, view.height, accepted.crop_padding,
                accepted.crop_alignment, view.min_fraction,
            )
            verdict, figures = result.verdict, (result.fraction_off, result.max_diff, result.psnr)
        except BrokenProcessPool:  # a worker died (killed, out of memory): owed still, retried after a backoff on a fresh pool
            log.error("job %d: check %d not compared: a comparison worker died", event.job, event.check)
            return
        except blender.BadImage as exc:  # a copy whose pixels do not decode (arrival checked its container only): they disagree, and
            # the arbitration that follows finds which party's copy is at fault (our own render decodes)
            log.warning("job %d: check %d: a copy does not decode: %s", event.job, event.check, exc)
            verdict, figures = "disagree", (1.0, 255, 0.0)
        key = (event.job, event.check, event.against)
        if self._owes("comparisons", key) != event:
            return  # voided or superseded meanwhile
        await self._settle(
            "comparisons",
            event,
            core.RecordComparison(
                job=event.job,
                check=event.check,
                against=event.against,
                a_sha256=event.a_sha256,
                b_sha256=event.b_sha256,
                verdict=core.Verdict(verdict),
                fraction_off=figures[0],
                max_diff=figures[1],
                psnr=min(figures[2], 99.0),
                entropy=self._entropy(),
                now=self._now(),
            )
        )

    async def _prerender(self, item: tiles.Prerender) -> None:
        """Render a tile's crop check window ahead of its arbitration (``tiles.TiledFrames._prerenders_owed``)."""
        path = self._prerender_path(item.job, item.frame, item.window)
        rendered = await self._render_own(item.job, item.frame, item.window, path.stem)
        if rendered is not None:
            os.replace(rendered, path)
            self._prerendered.setdefault(item.job, set()).add(item.key)

    async def _own_render(self, event: core.OwedRender) -> None:
        """Render one frame with our own Blender, for a check or an arbitration: a crop check's window (a tile's may be
        rendered already), or its whole frame (or tile) when the window found the subject wrong (Rule 19)."""
        whole = event.purpose == core.Purpose.FRAME
        target = self._own_path(event.job, event.check, whole=whole)
        tiled = core.tile_grid(self.state, event.job) is not None
        check = core.check_of(self.state, event.job, event.check)
        window = None if whole or check is None else check.window
        ahead = self._prerender_path(event.job, event.frame, window) if tiled and window is not None else None
        if ahead is not None and ahead.exists():
            if not target.exists():
                os.link(ahead, target)
        else:
            rendered = await self._render_own(event.job, event.frame, window, f"own-{event.check}{'-frame' if whole else ''}")
            if rendered is None:
                return  # owed still: tried again after a backoff
            os.replace(rendered, target)
        sha = (await file_header(target, kind="frame", job=event.job, frame=event.frame)).sha256
        key = (event.job, event.check)
        if self._owes("own_renders", key) == event:
            await self._settle(
                "own_renders", event, core.RecordOwnRender(job=event.job, check=event.check, sha256=sha, entropy=self._entropy(), now=self._now())
            )

    async def _render_own(self, job: int, unit: int, window: core.CropWindow | None, name: str) -> Path | None:
        """Render ``unit`` (over ``window``) in one of the job's Blender sessions; the image moved to ``jobs/J/own``, or None."""
        accepted = self.jobs[job]
        view = tiles.unit_view(core.tile_grid(self.state, job), accepted, unit, window)
        wall = self.settings.render_limits.wall_seconds
        async with self._own_render_lock:  # own_renders_at_once renders at a time (one by default: the CPU is shared)
            session = None
            try:
                session = await self._own_session(job, wall)
                started = trio.current_time()
                frames = await session.render([view.frame], wall_seconds=wall, window=view.render)
                self._paced(window is None, trio.current_time() - started)
            except blender.BlenderError as exc:
                log.error("job %d: our own render of frame %d failed: %s", job, unit, exc)
                if session is not None:  # the next try opens a fresh one
                    with trio.CancelScope(shield=True):
                        await session.aclose()
                return None
            moved = self._job_dir(job) / "own" / f".{name}{frames[0].path.suffix}"
            os.replace(frames[0].path, moved)  # before the session's next render clears its output
            if core.is_finished(self.state, job):  # its report may have closed the others meanwhile
                with trio.CancelScope(shield=True):
                    await session.aclose()
            else:
                self._own_sessions.setdefault(job, []).append(session)  # idle again, for the job's next render
        return moved

    async def _own_session(self, job: int, wall: float) -> blender.Session:
        """An idle Blender session of the job's for our own renders, alive with ``wall`` seconds left, taken from the
        idle ones, or opened (the file laid out in a folder of its own) when none is: one per render at once."""
        idle = self._own_sessions.get(job, [])
        while idle:
            session = idle.pop()
            if session.alive and session.remaining >= wall:
                return session
            with trio.CancelScope(shield=True):
                await session.aclose()
        job_dir = self._job_dir(job)
        used = {p.name for p in job_dir.glob("own-blender*")}
        names = ("own-blender" if n == 1 else f"own-blender-{n}" for n in range(1, len(used) + 2))
        work = job_dir / next(name for name in names if name not in used)
        blend = await self._lay_out_blend(job, work)
        accepted = self.jobs[job]
        backend = await self.runtimes.for_version(accepted.profile.blender_version)
        limits = attrs.evolve(self.settings.render_limits, wall_seconds=max(OWN_SESSION_SECONDS, wall))
        # A denoised file's tiles are rendered noisy, as its friends render them (``JobAccepted.denoise_after``).
        return await blender.start_session(backend, blend, work, threads=None, limits=limits, noisy=accepted.denoise_after)

    async def _lay_out_blend(self, job: int, work: Path) -> Path:
        """The job's .blend (a tree's main file, the tree beside it) linked into the new folder ``work``."""
        work.mkdir(parents=True)
        job_dir = self._job_dir(job)
        if self.jobs[job].tree_main:
            manifest = pack.read_manifest((job_dir / "job.blend").read_bytes())
            source = functools.partial(self._tree_file, job)
            return await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, work / "tree", source, link=True))
        blend = work / "job.blend"
        os.link(job_dir / "job.blend", blend)
        return blend

    async def _denoise_stitched(self, job: int, stitched: Path, target: Path) -> None:
        """Denoise a denoised file's stitched noisy frame once with our own Blender, into ``target`` in the file's own
        format (``blender.denoise_frame``), in a folder of its own, removed after."""
        accepted = self.jobs[job]
        work = self._job_dir(job) / f"denoise-{self._entropy()[:16]}"
        try:
            blend = await self._lay_out_blend(job, work)
            backend = await self.runtimes.for_version(accepted.profile.blender_version)
            async with self._own_render_lock:  # a Blender of ours, as an own render is: the CPU is shared
                await blender.denoise_frame(backend, blend, stitched, work, target, limits=self.settings.render_limits)
        except blender.BlenderError as exc:  # our own Blender, not the client, is at fault: it may ask again
            log.error("job %d: a stitched frame was not denoised: %s", job, exc)
            said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Refused("not-denoised", f"the requester could not denoise the frame: {said}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def close_own_session(self, job: int) -> None:
        """End the job's idle Blender sessions for our own renders and remove their folders (one rendering now is
        closed when its render ends: the job is over)."""
        with trio.CancelScope(shield=True):
            for session in self._own_sessions.pop(job, []):
                await session.aclose()
        for work in self._job_dir(job).glob("own-blender*"):  # links to the job's files and a window or two
            shutil.rmtree(work, ignore_errors=True)

    async def hold_own_sessions(self) -> None:
        """Run while the requester runs; as it stops, end every job's session (no Blender outlives it)."""
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for job in list(self._own_sessions):
                    await self.close_own_session(job)

