"""The requester's own work: comparing two stored copies, and rendering a frame with its own Blender.

Comparisons run in a thread on decoded pixels (whole frames in the job's own
format, or a crop check's window); own renders run one at a time, since the
requester's CPU is shared.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

import trio

from frender import blender
from frender.apps import pack
from frender.apps.requester_events import (
    crop_boxes,
    JobAccepted,
)
from frender.core import job as core
from frender.transports import (
    Refused,
    file_header,
)

log = logging.getLogger("frender.requester")


class OwnRenders:
    """Comparisons and own renders (a part of ``RequesterNode``)."""

    async def _compare(self, event: core.OwedComparison) -> None:
        accepted = self.jobs[event.job]
        try:  # never compare a copy that is not, byte for byte, the one the log accepted
            a = await self._checked(self.copies[(event.job, event.a_sha256)], event.a_sha256)
            b = await self._checked(self.copies[(event.job, event.b_sha256)], event.b_sha256)
        except Refused as exc:  # our own disk, not a friend, is at fault: owed still, retried with backoff
            log.error("job %d: check %d not compared: %s", event.job, event.check, exc.reason)
            return
        check = core.check_of(self.state, event.job, event.check)
        crop = crop_boxes(check.window if check is not None else None, accepted)
        try:
            result = await trio.to_thread.run_sync(lambda: _compare_copies(a, b, event.against, crop, accepted))
            verdict, figures = result.verdict, (result.fraction_off, result.max_diff, result.psnr)
        except blender.BadImage:  # stored copies were decoded on arrival; a bad one now is a disagreement
            verdict, figures = "disagree", (1.0, 255, 0.0)
        key = (event.job, event.check, event.against)
        if self._owes("comparisons", key) != event:
            return  # voided or superseded meanwhile
        await self._settle(
            "comparisons",
            key,
            core.RecordComparison(
                job=event.job,
                check=event.check,
                against=event.against,
                a_sha256=event.a_sha256,
                b_sha256=event.b_sha256,
                verdict=verdict,
                fraction_off=figures[0],
                max_diff=figures[1],
                psnr=min(figures[2], 99.0),
                entropy=self._entropy(),
                now=self._now(),
            )
        )

    async def _own_render(self, event: core.OwedRender) -> None:
        """Render one frame with our own Blender, for a check or an arbitration."""
        job_dir = self._job_dir(event.job)
        work = job_dir / f"own-{event.check}"
        async with self._own_render_lock:  # one render at a time: the requester's CPU is shared
            work.mkdir(parents=True, exist_ok=True)
            blend = work / "job.blend"
            if self.jobs[event.job].tree_main:
                manifest = pack.read_manifest((job_dir / "job.blend").read_bytes())
                source = functools.partial(self._tree_file, event.job)
                blend = await trio.to_thread.run_sync(functools.partial(pack.assemble, manifest, work / "tree", source, link=True))
            elif not blend.exists():
                os.link(job_dir / "job.blend", blend)
            try:
                check = core.check_of(self.state, event.job, event.check)
                accepted = self.jobs[event.job]
                crop = crop_boxes(check.window if check is not None else None, accepted)
                backend = await self.runtimes.for_version(accepted.profile.blender_version)
                frames = await blender.render(
                    backend, blend, work, [event.frame], threads=None, limits=self.settings.render_limits, window=None if crop is None else crop[1]
                )
            except blender.BlenderError as exc:
                log.error("job %d: our own render of frame %d failed: %s", event.job, event.frame, exc)
                return  # owed still: tried again after a backoff
        target = self._own_path(event.job, event.check)
        os.replace(frames[0].path, target)
        sha = (await file_header(target, kind="frame", job=event.job, frame=event.frame)).sha256
        key = (event.job, event.check)
        if self._owes("own_renders", key) == event:
            await self._settle(
                "own_renders", key, core.RecordOwnRender(job=event.job, check=event.check, sha256=sha, entropy=self._entropy(), now=self._now())
            )
        shutil.rmtree(work, ignore_errors=True)


def _compare_copies(a: Path, b: Path, against: str, crop: tuple[blender.Window, blender.Window] | None, accepted: JobAccepted) -> blender.Comparison:
    """Compare two stored copies: whole frames in the job's own format, or a crop check's window (8-bit PNG jobs:
    the subject's copy is its whole frame, the verifier's and the requester's are the padded box, compared in its centre)."""
    width, height = accepted.width, accepted.height
    if crop is None:
        return blender.compare_output(a, b, accepted.output, width=width, height=height)
    box, rendered = crop
    pad, align = accepted.crop_padding, accepted.crop_alignment
    if against == "pair":  # a: the subject's frame, b: the verifier's (or our own) crop
        return blender.compare_window(a, b, box, width=width, height=height, pad=pad, align=align)
    if against == "subject":  # a: our own crop, b: the subject's frame
        return blender.compare_window(b, a, box, width=width, height=height, pad=pad, align=align)
    one, two = (blender.decode_png(p, width=rendered.width, height=rendered.height) for p in (a, b))  # two crops
    return blender.compare_pixels(box.of(one, rendered), box.of(two, rendered))
