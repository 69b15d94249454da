"""What a client hears of its jobs (a part of ``RequesterNode``): progress, held until something changes, the
``frender jobs`` lines, and cancelling. A still in tiles is told in whole frames, its tiles counted beside."""

from __future__ import annotations

import logging

import trio

from frender.apps import artist, words
from frender.apps import messages as msg
from frender.apps.requester_events import JobAccepted
from frender.apps.tiles import TiledFrames
from frender.core import job as core

log = logging.getLogger("frender.requester")


class JobReplies(TiledFrames):
    """Progress, jobs and cancel replies (a part of ``RequesterNode``)."""

    async def _progress_after(self, accepted: JobAccepted, final: int, delivered: int) -> msg.ProgressReply:
        """The progress once other than ``final`` frames are final, the delivered count is not
        ``delivered`` (when that is >= 0), or the job finished (held at most hold_progress)."""
        def unchanged() -> bool:
            if core.tile_grid(self.state, accepted.job) is None:
                now_delivered, now_final = core.delivered_and_final(self.state, accepted.job)
            else:
                now_delivered, now_final = self._tiled_counts(accepted.job)
            return (
                0 <= final
                and now_final == final  # fewer: frames were recalled, which the client must hear of at once
                and (delivered < 0 or now_delivered == delivered)
                and not core.is_finished(self.state, accepted.job)
            )

        with trio.move_on_after(self.settings.hold_progress):
            while unchanged():
                await self._changed.wait()
        return self._progress(accepted)

    def _progress(self, accepted: JobAccepted) -> msg.ProgressReply:
        j = core.summary(self.state, accepted.job)
        lines = core.progress(self.state, accepted.job)
        problem = ""
        if j.stalled:
            problem = "every friend of this job is gone; waiting for the master to grant more"
        if not j.finished and lines and (starved := core.starved(self.state, accepted.job)):  # friends it had can go on no more
            problem = f"no friend can go on with it ({starved}); asking the master for others: it fails if none comes in time"
        if j.failed:
            problem = f"the job failed: {words.failure_text(j.failure_cause, j.failure)}"
        if (refusal := self.refused.get(accepted.job)) is not None:
            problem = f"the master refused this job's report ({refusal.code}: {refusal.reason}); nobody is paid until an operator acts"
        elif self.master_problem:
            problem = self.master_problem
        wants = self.wants.get(accepted.job)
        active = sum(1 for p in lines if p.status == "active")
        code, detail = self.short_why.get(accepted.job, ("", "")) if not active and not j.finished else ("", "")
        reply = msg.ProgressReply(
            job=accepted.job,
            total=j.total,
            delivered=j.delivered,
            final=j.final,
            friends=tuple(
                msg.FriendLine(
                    friend=p.friend, delivered=p.delivered, final=p.final, checks=p.checks_paid, evicted=p.evicted, gone=p.status == "gone"
                )
                for p in lines
            ),
            checks=j.resolved,
            disagreements=j.disagreements,
            evictions=j.evicted,
            finished=j.finished,
            problem=problem,
            cancelled=j.cancelled,
            wanted=wants.friends if wants is not None else 0,
            active=active,
            own_renders=j.own_renders,
            spot_checks=j.spot_checks,
            failed=j.failure,
            failed_cause=str(j.failure_cause) if j.failed else "",
            eta=self._eta(accepted.job, len(j.final), j.total, j.finished),
            waiting=words.waiting_cause(code) if code else "",
            waiting_detail=detail,
            recalled=tuple(
                msg.Recall(frame=frame, times=times, rendered=rendered, final=core.final_copy(self.state, accepted.job, frame) is not None)
                for frame, (times, rendered) in sorted(self.recalls.get(accepted.job, {}).items())
            ),
        )
        return self._tiled_progress(accepted.job, reply)  # a still in tiles: whole frames listed, tiles counted

    def _eta(self, job: int, final: int, total: int, finished: bool) -> float:
        """The one estimate (``words.time_left``) from the pace of final frames since the job started."""
        return 0.0 if finished else words.time_left(self._now() - self.started.get(job, self._now()), final, total)

    def _job_line(self, accepted: JobAccepted) -> msg.JobLine:
        """One line of ``frender jobs``: state, frames, friends, an estimate from the pace so far, points."""
        job = accepted.job
        j = core.summary(self.state, job)
        escrowed, spent = core.points(self.state, job)
        wants = self.wants.get(job)
        final, total, numbers = len(j.final), j.total, core.frame_numbers(self.state, job)
        eta = self._eta(job, final, j.total, j.finished)
        if core.tile_grid(self.state, job) is not None:  # a still in tiles: frames whole, of the job's frames
            final, numbers = self._whole_frames(job)
            total = len(numbers)
        active = sum(1 for p in core.progress(self.state, job) if p.status == "active") if not j.finished else 0
        code = self.short_why.get(job, ("", ""))[0] if not j.finished and not active else ""
        return msg.JobLine(
            job=job,
            state=words.job_state(finished=j.finished, cancelled=j.cancelled, failed=j.failed, active=active),
            waiting=words.waiting_cause(code) if code else "",
            final=final,
            total=total,
            active=active,
            wanted=wants.friends if wants is not None else 0,
            eta=eta,
            escrowed=escrowed,
            spent=spent,
            priority=wants.priority if wants is not None else 0,
            name=accepted.name or "frame_####",
            extension=accepted.output.extension if accepted.extension is None else accepted.extension,
            fps=accepted.fps,
            failed=j.failure,
            failed_cause=str(j.failure_cause) if j.failed else "",
            file=accepted.tree_main,
            frames=artist.frame_ranges(numbers),
        )

    async def _cancel(self, accepted: JobAccepted) -> msg.Cancelled:
        """Cancel the job (the core refuses a finished one); the closing report to the master is owed from here on."""
        job = accepted.job
        await self.apply(core.CancelJob(job=job, entropy=self._entropy(), now=self._now()))
        escrowed, spent = core.points(self.state, job)
        final, total = len(core.summary(self.state, job).final), core.frame_count(self.state, job)
        if core.tile_grid(self.state, job) is not None:  # a still in tiles: frames whole, of the job's frames
            final, numbers = self._whole_frames(job)
            total = len(numbers)
        log.info("job %d cancelled by its submitter: %d frames final, %d of %d points earned", job, final, spent, escrowed)
        return msg.Cancelled(job=job, final=final, total=total, escrowed=escrowed, spent=spent)
