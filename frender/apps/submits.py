"""A client's submit: inspect the file, log the opening, ask the master, lay the job out, accept it.

The opening (``JobOpening``) is logged before the master is asked, so a job the
master opens is either accepted here (``JobAccepted`` names the opening) or
released at the master by the reactions (``Reactions._release_opening``).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import attrs
import trio

from frender import blender
from frender.apps import artist, pack
from frender.apps import messages as msg
from frender.apps.requester_events import (
    JobAccepted,
    JobOpening,
    JobOpeningReleased,
    JobWants,
)
from frender.core import job as core
from frender.transports import (
    Peer,
    Refused,
)
from frender.apps.reactions import _UNSETTLED, _joining, _keys

log = logging.getLogger("frender.requester")


class Submits:
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
        # Crop windows are compared as 8-bit PNG: other formats are checked on whole frames, in their own precision;
        # so are files whose compositor or sequencer makes a window differ from the frame (info.crop_unsafe).
        crops = self.settings.job.crop_checks and (asked.output.file_format, asked.output.color_depth) == ("PNG", "8")
        if crops and info.crop_unsafe:
            log.info("checking on whole frames: a window of this file differs from the frame (%s)", ", ".join(info.crop_unsafe))
            crops = False
        settings = attrs.evolve(self.settings.job, checks_per_friend=submit.checks_per_friend, crop_checks=crops)
        opening = JobOpening(
            opening=self._entropy(),
            submitter=submit.user,
            submitter_key=peer.fingerprint,
            blend_sha256=submit.blend_sha256,
            frames=len(frames),
            friends=submit.friends,
            priority=submit.priority,
        )
        await self.apply(opening)  # before the master escrows anything: every job it opens is one we will settle
        self._opening_now.add(opening.opening)
        try:
            return await self._open(submit, peer, opening, frames=frames, settings=settings, profile=profile, info=info, asked=asked, manifest=manifest)
        finally:
            self._opening_now.discard(opening.opening)
            if opening.opening in self.openings:  # not accepted: the reactor releases it at the master
                self.wake.set()

    async def _open(
        self, submit: msg.Submit, peer: Peer, opening: JobOpening, *, frames, settings, profile, info, asked, manifest
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
        crop_padding, crop_alignment = blender.crop_margins(denoised=info.denoiser is not None)
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
                tree_main=manifest.main if manifest is not None else "",
                crop_padding=crop_padding,
                crop_alignment=crop_alignment,
                name=asked.name,
                extension=asked.extension,
                opening=opening.opening,
            ),
            _keys(granted),
            JobWants(job=granted.job, friends=submit.friends, priority=submit.priority),
            core.StartJob(
                job=granted.job,
                frames=tuple(frames),
                settings=settings,
                checks_escrowed=settings.checks_to_escrow(len(frames), submit.friends),
                now=now,
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



