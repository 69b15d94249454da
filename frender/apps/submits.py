"""A client's submit: inspect the file, log the opening, ask the master, lay the job out, accept it.

The opening (``JobOpening``) is logged before the master is asked, so a job the
master opens is either accepted here (``JobAccepted`` names the opening) or
released at the master by the reactions (``Reactions._release_opening``).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

import attrs
import trio

from frender import blender
from frender.apps import artist, pack, tiles
from frender.apps import messages as msg
from frender.apps.requester_events import (
    JobAccepted,
    JobOpening,
    JobOpeningReleased,
    JobWants,
)
from frender.apps.requester_room import Room
from frender.core import job as core
from frender.core.profile import RenderProfile
from frender.transports import (
    Peer,
    Refused,
)
from frender.apps.reactions import _UNSETTLED, _joining, _keys

# A friend's laptop may render a frame this many times slower than the requester measured it: a job's deadlines
# count at least that, so a heavy file's tasks are not given back for ever under an estimate set for light ones.
FRIEND_SLOWER = 3.0

log = logging.getLogger("frender.requester")

# What the artist is told of a denoised file in tiles (the figures: docs/performance.md, "A denoised still in tiles").
DENOISED_AFTER = (
    "the denoiser ({denoiser}) runs once on each whole frame: its tiles are rendered noisy with the denoising passes, "
    "stitched, then denoised by Blender's file denoiser with the file's settings (no seams; a few percent of pixels "
    "differ by more than 2/255 from the denoiser inside a whole-frame render)"
)


class Submits(Room):
    """Submitting a job (a part of ``RequesterNode``)."""

    async def _submit(self, peer: Peer, submit: msg.Submit) -> msg.Submitted:
        account = await self._account_of(peer)  # before any inspection: Blender runs only for accounts with points
        if account.user != submit.user:
            raise Refused("name-taken", f"your key holds the account {account.user!r}, not {submit.user!r}")
        blend_path = self._upload_path(submit.blend_sha256)
        if not self.uploads.owns(peer.fingerprint, submit.blend_sha256):  # whoever else uploaded it
            raise Refused("no-upload", "upload the .blend yourself first (put kind 'upload' named by its sha256)")
        if not 1 <= submit.friends <= self.settings.max_friends:
            raise Refused("bad-job", f"ask for 1 to {self.settings.max_friends} friends")
        manifest = None
        if submit.tree:
            manifest, info, backend = await self._inspect_tree(submit.blend_sha256, peer.fingerprint, submit.blender)
        else:
            backend = await self._runtime_for(blend_path, submit.blender)
            try:
                info = await blender.inspect(backend, blend_path, limits=self.settings.render_limits)
            except blender.BlenderError as exc:
                raise Refused("bad-blend", str(exc).splitlines()[0]) from None
        if info.refusals:
            raise Refused("refused-blend", "; ".join(info.refusals))
        try:
            asked = artist.check_request(info, submit.frames, allow_outside=submit.allow_outside, allow_missing=submit.allow_missing)
        except artist.RequestRefused as exc:
            raise Refused(exc.code, exc.reason) from None
        frames = asked.frames
        if not 1 <= len(frames) <= self.settings.max_frames or len(set(frames)) != len(frames):
            raise Refused("bad-job", f"a job is 1 to {self.settings.max_frames} distinct frames")
        if not 0 <= submit.checks_per_friend <= 16:
            raise Refused("bad-job", "checks per friend are 0 to 16")
        # The job's profile: the file's Blender on this machine, naming the file's engine; a GPU engine's friends
        # share its GL renderer.
        profile = (await blender.probe(backend)).for_engine(info.engine)
        grid, untiled = _tiling(submit, info, asked.output, len(frames))
        # A denoised file in tiles: its tiles are rendered noisy as half-float EXR, checked whole, denoised once stitched.
        denoise_after = grid is not None and info.denoiser is not None
        # Crop windows are compared as 8-bit PNG: other formats are checked on whole frames, in their own precision;
        # so are files whose compositor or sequencer makes a window differ from the frame (info.crop_unsafe).
        crops = self.settings.job.crop_checks and (asked.output.file_format, asked.output.color_depth) == ("PNG", "8") and not denoise_after
        if crops and info.crop_unsafe:
            log.info("checking on whole frames: a window of this file differs from the frame (%s)", ", ".join(info.crop_unsafe))
            crops = False
        crop_measure = ""
        frame_seconds = 0.0  # our own render of a frame, when measured: the job's deadlines are never shorter
        windows_equal = True  # as far as measured: a file whose windows differ from its frame is never tiled
        if crops and self.settings.measure_crops and not backend.windows_are_frames:
            # Whether a window equals its frame is the file's, not the engine's: measured once, with our own Blender.
            measured = await self._measure_crops(backend, submit.blend_sha256, manifest, info, frames[0])
            crop_measure = _measure_words(measured)
            frame_seconds = measured.frame_seconds
            self._paced(True, measured.frame_seconds)  # admission's pace (Rule 21) before our first own render is timed
            self._paced(False, measured.window_seconds)
            if not measured.equal:
                log.info("checking on whole frames: %s", crop_measure)
                crops = windows_equal = False
        if grid is None and not untiled and frame_seconds and info.denoiser is None and submit.tiles.strip().lower() == "auto":
            # A short animation of long frames: its tail in tiles (core.auto_grid), now that a frame's time is known.
            grid, untiled = _tiling(submit, info, asked.output, len(frames), frame_seconds=frame_seconds, long_frame=self.settings.long_frame)
        settings = attrs.evolve(self.settings.job, checks_per_friend=submit.checks_per_friend, crop_checks=crops)
        if FRIEND_SLOWER * frame_seconds > settings.seconds_per_frame:  # a heavy file: tasks would time out for ever
            settings = attrs.evolve(settings, seconds_per_frame=round(FRIEND_SLOWER * frame_seconds, 3))
            log.info("a frame took %.1f s here: deadlines count %.1f s a frame", frame_seconds, settings.seconds_per_frame)
        if grid is not None and not windows_equal:  # its tiles would show seams
            grid, untiled = None, f"not rendered in tiles: {crop_measure}"
        units = frames
        if grid is not None:  # the core's Rule 20: every tile a work unit; a task one tile, or an animation's whole frame
            units = tuple(grid.units(tuple(frames)))
            if len(units) > self.settings.max_tiles:  # max_frames counts frames, as the artist does; this, the core's units
                raise Refused(
                    "bad-job", f"{len(frames)} frame(s) in {grid.count} tiles each are {len(units)} tiles: at most {self.settings.max_tiles} in one job"
                )
            settings = attrs.evolve(  # its spot windows rendered beside its tiles
                settings, tiles=grid, max_chunk=1, windows_ahead=True, whole_frames_first=len(frames) > 1
            )
        opening = JobOpening(
            opening=self._entropy(),
            submitter=submit.user,
            submitter_key=peer.fingerprint,
            blend_sha256=submit.blend_sha256,
            frames=len(units),
            friends=submit.friends,
            priority=submit.priority,
            tiles=0 if grid is None else grid.count,
        )
        await self.apply(opening)  # before the master escrows anything: every job it opens is one we will settle
        self._opening_now.add(opening.opening)
        try:
            submitted = await self._open(
                submit, peer, opening, frames=units, settings=settings, profile=profile, info=info, asked=asked, manifest=manifest,
                crop_measure=crop_measure, denoise_after=denoise_after,
            )
            return attrs.evolve(
                submitted, frames=tuple(frames), tiles="" if grid is None else f"{grid.cols}x{grid.rows}", untiled=untiled,
                denoised_after=DENOISED_AFTER.format(denoiser=info.denoiser) if denoise_after else "",
            )
        finally:
            self._opening_now.discard(opening.opening)
            if opening.opening in self.openings:  # not accepted: the reactor releases it at the master
                self.wake.set()

    async def _open(
        self,
        submit: msg.Submit,
        peer: Peer,
        opening: JobOpening,
        *,
        frames: tuple[int, ...],
        settings: core.JobSettings,
        profile: RenderProfile,
        info: blender.BlendInfo,
        asked: artist.Accepted,
        manifest: pack.Manifest | None,
        crop_measure: str = "",
        denoise_after: bool = False,
    ) -> msg.Submitted:
        """Ask the master to open the logged ``opening``, lay the job out, and accept it (``JobAccepted``)."""
        try:
            granted = await self._ask_master(
                msg.AskFriends(
                    submitter=submit.user,
                    submitter_key=peer.fingerprint,
                    frames=len(frames),
                    want=submit.friends,
                    profile=profile,
                    checks_per_friend=settings.checks_to_escrow(len(frames), submit.friends),
                    blend_sha256=submit.blend_sha256,
                    address=str(self.address),
                    priority=submit.priority,
                    opening=opening.opening,
                ),
                retry=False,
            )
        except Refused as exc:
            if exc.code not in _UNSETTLED:  # the master answered: it opened nothing
                await self.apply(JobOpeningReleased(opening=opening.opening))
            raise
        blend_path = self._upload_path(submit.blend_sha256)
        crop_padding, crop_alignment = blender.crop_margins(denoised=info.denoiser is not None and not denoise_after)
        job_dir = self._job_dir(granted.job)
        (job_dir / "copies").mkdir(parents=True, exist_ok=True)
        (job_dir / "own").mkdir(exist_ok=True)
        if not (job_dir / "job.blend").exists():
            os.link(blend_path, job_dir / "job.blend")  # for a tree, its manifest
        if manifest is not None:
            await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, job_dir / "tree", self._upload_path, link=True))
        width, height = info.resolution
        now = self._now()
        await self.apply(
            JobAccepted(
                job=granted.job,
                submitter=submit.user,
                submitter_key=peer.fingerprint,
                blend_sha256=submit.blend_sha256,
                width=width,
                height=height,
                profile=profile,
                fps=info.fps,
                file_format=asked.output.file_format,
                color_depth=asked.output.color_depth,
                color_mode=asked.output.color_mode,
                quality=asked.output.quality,
                tree_main=manifest.main if manifest is not None else "",
                crop_padding=crop_padding,
                crop_alignment=crop_alignment,
                crop_measure=crop_measure,
                name=asked.name,
                extension=asked.extension,
                opening=opening.opening,
                denoise_after=denoise_after,
            ),
            _keys(granted),
            JobWants(job=granted.job, friends=submit.friends, priority=submit.priority),
            core.StartJob(
                job=granted.job,
                frames=tuple(frames),
                settings=settings,
                checks_escrowed=settings.checks_to_escrow(len(frames), submit.friends),
                now=now,
                entropy=self._entropy(),
            ),
            *(
                [  # none granted: the job waits in the master's queue, and grow_forever asks for its friends
                    _joining(granted, entropy=self._entropy(), now=now)
                ]
                if granted.friends
                else []
            ),
        )
        log.info("job %d: %d frames for %s on %d friends", granted.job, len(frames), submit.user, len(granted.friends))
        if not granted.friends:
            log.info("job %d: no friend is free yet; it waits for the %d asked for", granted.job, submit.friends)
        elif granted.shortfall:
            log.info("job %d: %d of the %d friends asked for are busy; it grows as they free up", granted.job, granted.shortfall, submit.friends)
        return msg.Submitted(
            job=granted.job, frames=tuple(frames), width=width, height=height, fps=info.fps,
            name=asked.name, extension=asked.extension, output=asked.output.describe(),
        )

    async def _measure_crops(
        self, backend: blender.Backend, blend_sha256: str, manifest: pack.Manifest | None, info: blender.BlendInfo, frame: int
    ) -> blender.CropMeasure:
        """Render ``frame`` whole and windows of it with our own Blender (blender.measure_crops), in a scratch folder."""
        work = self.home / "measure" / self._entropy()
        work.mkdir(parents=True)
        try:
            if manifest is not None:
                source = self._upload_path
                blend = await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, work / "tree", source, link=True))
            else:
                blend = work / "job.blend"
                os.link(self._upload_path(blend_sha256), blend)
            width, height = info.resolution
            try:
                return await blender.measure_crops(
                    backend, blend, work, frame, width=width, height=height, denoised=info.denoiser is not None,
                    limits=self.settings.render_limits,
                )
            except blender.BlenderError as exc:
                raise Refused("bad-blend", f"frame {frame} does not render here: {str(exc).splitlines()[0]}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _runtime_for(self, blend: Path, requested: str) -> blender.Backend:
        """The Blender that renders ``blend``: its own series, or the one the artist named (blender.Runtimes)."""
        try:
            return await self.runtimes.for_file(blend, requested)
        except (blender.NoRuntime, blender.NewerBlendFile, blender.NotABlendFile) as exc:
            raise Refused("no-blender", str(exc)) from None

    async def _inspect_tree(
        self, manifest_sha256: str, submitter_key: str, requested: str = ""
    ) -> tuple[pack.Manifest, blender.BlendInfo, blender.Backend]:
        """Check an uploaded job tree, lay it out, and inspect and guard every .blend in it with the main file's Blender.

        Every file of the tree must be the submitter's own upload: another
        account's file is never reached by naming its sha256.

        The main file's facts stand for the job; every library's refusals and
        missing files are added to them, named by the library's path.
        """
        try:
            manifest = pack.read_manifest(self._upload_path(manifest_sha256).read_bytes())
        except (OSError, ValueError) as exc:
            raise Refused("bad-tree", f"the job tree's manifest is unusable: {exc}") from None
        absent = [f.path for f in manifest.files if not self.uploads.owns(submitter_key, f.sha256)]
        if absent:
            raise Refused("no-upload", "upload these files of the tree yourself first: " + ", ".join(absent[:8]))
        root = self.home / "trees" / manifest_sha256
        await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, root, self._upload_path, link=True))
        backend = await self._runtime_for(root / manifest.blends[0], requested)
        infos = []
        for path in manifest.blends:
            try:
                infos.append(await blender.inspect(backend, root / path, limits=self.settings.render_limits, job_dir=root))
            except blender.BlenderError as exc:
                raise Refused("bad-blend", f"{path}: {str(exc).splitlines()[0]}") from None
        main = infos[0]
        refusals = list(main.refusals)
        missing = list(main.missing)
        for path, info in zip(manifest.blends[1:], infos[1:]):
            refusals += [f"library {path}: {reason}" for reason in info.refusals]
            missing += [m for m in info.missing if m not in missing]
        return manifest, attrs.evolve(main, refusals=tuple(refusals), missing=tuple(missing)), backend

    def _tree_files(self, job: int) -> dict[str, str]:
        """The sha256 of every file in a tree job -> its path in the tree (read from its manifest once)."""
        if job not in self._trees:
            self._trees[job] = {f.sha256: f.path for f in pack.read_manifest((self._job_dir(job) / "job.blend").read_bytes()).files}
        return self._trees[job]

    def _tree_file(self, job: int, sha256: str) -> Path:
        """The job's own link to a file of its tree: what its friends fetch and its own renders read, whatever
        becomes of the uploads (they expire, and are never another owner's to hand out)."""
        return self._job_dir(job) / "tree" / self._tree_files(job)[sha256]


def _measure_words(m: blender.CropMeasure) -> str:
    """One line for the log and ``frender replay``: how far the worst window was from the same pixels of the frame."""
    w = m.worst
    said = "equal" if m.equal else "DIFFER from"
    return (
        f"{len(m.windows)} windows of frame {m.frame} {said} the same pixels of the whole frame: worst {w.fraction_off:.2%} of pixels off "
        f"by more than 4/255, max {w.max_diff}/255 ({'crop checks' if m.equal else 'whole frames'})"
    )


def _tiling(
    submit: msg.Submit, info: blender.BlendInfo, output: blender.OutputFormat, frames: int, *, frame_seconds: float = 0.0,
    long_frame: float = core.LONG_FRAME_SECONDS,
) -> tuple[core.TileGrid | None, str]:
    """The job's tiles (None: whole frames) and, when tiles were asked for but the file cannot have them, why;
    ``frame_seconds``: our own render of a frame, once measured (``--tiles auto`` shares the tail of a short animation
    whose frames take ``long_frame`` or more)."""
    if not submit.tiles:
        return None, ""
    try:
        spec = tiles.parse_tiles(submit.tiles)
    except ValueError as exc:
        raise Refused("bad-job", str(exc)) from None
    width, height = info.resolution
    if spec == "":
        return None, ""
    if spec == "auto":
        grid = core.auto_grid(frames, submit.friends, width, height, frame_seconds, long_frame)
    else:
        assert isinstance(spec, tuple)
        grid = core.TileGrid(cols=spec[0], rows=spec[1], width=width, height=height)
    if grid is None:
        return None, ""
    if problems := grid.problems():
        raise Refused("bad-job", "; ".join(problems))
    why = tiles.untileable(info, output)
    if why:  # never a frame with seams: whole frames, and the artist is told why
        log.info("rendering whole frames, not %dx%d tiles: %s", grid.cols, grid.rows, why)
        return None, f"not rendered in tiles: {why}"
    return grid, ""
