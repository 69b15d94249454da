"""Jobs that cannot go on: a render error that friends agree on ends the job with it (Rule 17); so does
starving, when no friend can take frames from it and none comes in time (Rule 18).

Invariants: a friend's render error is a fact about the file, never a fault of
the friend: nobody is evicted, fined or judged for it (the task goes back to the
queue, as any returned task). The job fails only when the same error comes from
friends of two different owners, or from every owner the job has (a job whose
friends all share one owner): one account cannot end another's job alone while
other owners render it. A failed job is over like a cancelled one: final frames
stay final and are paid, the rest of the escrow goes back to the submitter.
A job starves from the first time it asks the master for friends (``MoreFriendsWanted``)
since a friend last took frames to render or frames became final; once it has
starved ``starved_after`` seconds it fails with why (``starved_reason``), so it
never waits forever on friends that will not come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frender.core.job import _escrow, _tasks
from frender.core.job._states import JOB, FriendStatus
from frender.core.job.events import Failure, FramesFinal, JobFailed, MoreFriendsWanted, RenderFailed, TaskAssigned, TaskKind

if TYPE_CHECKING:
    from frender.core.job._job import Draft, Job

__all__ = ["MAX_ERROR", "render_failed", "starve", "starved_reason", "EVOLVERS", "error_text"]

MAX_ERROR = 300  # characters of a friend's render error kept


def error_text(error: str) -> str:
    """A friend's error as compared and shown: its first line, trimmed and bounded."""
    lines = error.strip().splitlines()
    return lines[0].strip()[:MAX_ERROR] if lines else ""


def render_failed(d: Draft, friend: str, task: int, error: str) -> None:
    """Record the friend's render error; fail the job once enough owners reported it the same way."""
    j = d.job
    text = error_text(error)
    if not text:
        return
    d.emit(RenderFailed(job=j.job, task=task, friend=friend, error=text, now=d.now))
    owners = {rec.owner for rec in j.friends.values() if rec.status != FriendStatus.EVICTED}
    if len(j.render_errors.get(text, ())) >= min(2, len(owners)) and JOB.allows(j.phase, "fail"):
        d.emit(JobFailed(job=j.job, error=text, report=_escrow.report(j), now=d.now))


def starved_reason(j: Job) -> str:
    """Why the job cannot go on with the friends it has (Rule 16), or "" while one of them can."""
    if any(not _tasks.blocked(j, f) for f in j.active()):
        return ""
    s = j.settings
    per_account, per_job = s.own_untrusted_bounds(len(j.frames.numbers))
    return (
        f"job {j.job}: {len(j.checks.evictions)} of its {len(j.friends)} friends were caught forging and the rest are gone or "
        f"untrusted friends past the requester's own checks for them ({j.checks.own_untrusted} of {per_job} for the job, "
        f"{per_account} per account); {len(j.frames.final)} of {len(j.frames.numbers)} frames are final"
    )


def starve(d: Draft) -> None:
    """Rule 18: a job that asked for friends ``starved_after`` seconds ago, and that no friend took frames from since,
    fails with why; the master closes it as any failed job (final frames paid, the rest refunded)."""
    j = d.job
    since = j.starving_since
    if since is None or not j.wanted or d.now - since < j.settings.starved_after or not JOB.allows(j.phase, "fail"):
        return
    why = starved_reason(j) or f"job {j.job}: no friend of it can go on"
    error = f"{why}; the master granted no friend that could go on within {j.settings.starved_after:g} s"
    d.emit(JobFailed(job=j.job, error=error, report=_escrow.report(j), now=d.now, cause=Failure.STARVED))


# ---------------------------------------------------------------- evolving


def _render_failed(j: Job, e: RenderFailed) -> None:
    owner = j.friends[e.friend].owner if e.friend in j.friends else e.friend
    j.render_errors[e.error] = j.render_errors.get(e.error, frozenset()) | {owner}


def _job_failed(j: Job, e: JobFailed) -> None:
    j.phase = JOB.next(j.phase, "fail", j.job)
    j.report = e.report
    j.failure = e.error
    j.failure_cause = e.cause


def _starving(j: Job, e: MoreFriendsWanted) -> None:
    if j.starving_since is None:
        j.starving_since = e.now


def _task_assigned(j: Job, e: TaskAssigned) -> None:
    if e.kind == TaskKind.RENDER:  # a friend takes frames from the job: it goes on
        j.starving_since = None


def _frames_final(j: Job, e: FramesFinal) -> None:
    j.starving_since = None


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {
    RenderFailed: _render_failed,
    JobFailed: _job_failed,
    MoreFriendsWanted: _starving,
    TaskAssigned: _task_assigned,
    FramesFinal: _frames_final,
}
