"""Files that cannot render: a render error that friends agree on ends the job with it.

Invariants: a friend's render error is a fact about the file, never a fault of
the friend: nobody is evicted, fined or judged for it (the task goes back to the
queue, as any returned task). The job fails only when the same error comes from
friends of two different owners, or from every owner the job has (a job whose
friends all share one owner): one account cannot end another's job alone while
other owners render it. A failed job is over like a cancelled one: final frames
stay final and are paid, the rest of the escrow goes back to the submitter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frender.core.job import _escrow
from frender.core.job._states import JOB, FriendStatus
from frender.core.job.events import JobFailed, RenderFailed

if TYPE_CHECKING:
    from frender.core.job._job import Draft, Job

__all__ = ["MAX_ERROR", "render_failed", "EVOLVERS", "error_text"]

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


# ---------------------------------------------------------------- evolving


def _render_failed(j: Job, e: RenderFailed) -> None:
    owner = j.friends[e.friend].owner if e.friend in j.friends else e.friend
    j.render_errors[e.error] = j.render_errors.get(e.error, frozenset()) | {owner}


def _job_failed(j: Job, e: JobFailed) -> None:
    j.phase = JOB.next(j.phase, "fail", j.job)
    j.report = e.report
    j.failure = e.error


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {RenderFailed: _render_failed, JobFailed: _job_failed}
