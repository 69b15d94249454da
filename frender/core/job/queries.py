"""What a shell may read of a job: every read goes through these, never through the records.

Invariants: queries are pure and change nothing; each names its job and raises
``Rejected("unknown-job")`` for a job never started here.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from attrs import frozen

from frender.core._decider import Rejected
from frender.core.job import _checks, _draws, _failures, _tasks
from frender.core.job._checks import Check
from frender.core.job._job import Job, Requester
from frender.core.job._states import CheckState, FriendStatus, Phase
from frender.core.job._tiles import TileGrid
from frender.core.job.events import CropWindow, Evidence, Failure, FinalFrame, JobReport, Outcome

__all__ = [
    "frame_numbers",
    "Outlook",
    "FriendProgress",
    "JobSummary",
    "job_numbers",
    "running_jobs",
    "is_finished",
    "frame_count",
    "delivered_and_final",
    "candidates",
    "final_copy",
    "holder_of",
    "live_tasks",
    "silent_candidates",
    "friend_status",
    "outlook",
    "progress",
    "summary",
    "queued",
    "holders",
    "checks",
    "verifier_of",
    "report",
    "evictions",
    "points",
    "recalled",
    "starved",
    "tile_grid",
    "own_renders_ahead",
    "check_takers",
    "spotted_always",
    "windows_ahead",
]


class Outlook(StrEnum):
    """For a friend that got no task."""

    WORK = "work"  # it holds one
    WAIT = "wait"  # poll again
    DONE = "done"  # the job is over for it
    EVICTED = "evicted"


@frozen(kw_only=True)
class FriendProgress:
    friend: str
    owner: str
    status: FriendStatus
    delivered: int  # valid copies that became candidates
    pending: int  # candidates not final yet
    final: int
    checks_paid: int
    evicted: bool


@frozen(kw_only=True)
class JobSummary:
    """A job at a glance: what a client's progress reply and the replay audit print."""

    job: int
    phase: Phase
    total: int  # frames in the job
    delivered: int  # frames with a candidate or final copy
    final: tuple[int, ...]  # final frames, in the order they became final
    checks: int  # checks ever drawn (tests and pairs)
    resolved: int  # of those, resolved
    disagreements: int  # resolved other than agreed or void
    arbitrations: int
    evicted: tuple[str, ...]  # in eviction order
    stalled: bool  # every friend is gone; more were asked for
    own_renders: int = 0  # the requester's own renders: checks no friend could take and arbitrations (spot checks included)
    spot_checks: int = 0  # arbitrations of agreed crop checks: the requester's spot checks
    failure: str = ""  # a failed job: the render error its friends agreed on, or why it starved (``failure_cause``)
    failure_cause: Failure = Failure.RENDER
    recalled: tuple[int, ...] = ()  # frames served once, then withdrawn (Rule 15) and not final again yet
    provisional: int = 0  # frames whose checks agreed but that wait for the requester to check a friend they rest on (Rule 14)

    @property
    def finished(self) -> bool:
        """Over: every frame final, cancelled or failed (``cancelled`` and ``failed`` tell which)."""
        return self.phase != Phase.RUNNING

    @property
    def cancelled(self) -> bool:
        return self.phase == Phase.CANCELLED

    @property
    def failed(self) -> bool:
        return self.phase == Phase.FAILED


def _job(state: Requester, job: int) -> Job:
    try:
        return state.jobs[job]
    except KeyError:
        raise Rejected("unknown-job", f"job {job} was never started here") from None


def job_numbers(state: Requester) -> tuple[int, ...]:
    """Every job started here, in start order."""
    return tuple(state.jobs)


def running_jobs(state: Requester) -> tuple[int, ...]:
    """Jobs not finished yet, in start order."""
    return tuple(n for n, j in state.jobs.items() if j.phase == Phase.RUNNING)


def is_finished(state: Requester, job: int) -> bool:
    """The job is over: finished, cancelled by its submitter, or failed (its file cannot render)."""
    return _job(state, job).phase != Phase.RUNNING


def frame_count(state: Requester, job: int) -> int:
    return len(_job(state, job).frames.numbers)


def frame_numbers(state: Requester, job: int) -> tuple[int, ...]:
    """The job's frames, in frame order."""
    return tuple(sorted(_job(state, job).frames.numbers))


def delivered_and_final(state: Requester, job: int) -> tuple[int, int]:
    """Frames with a copy in (candidate or final), and final frames. O(1)."""
    f = _job(state, job).frames
    return len(f.copy) + len(f.final), len(f.final)


def candidates(state: Requester, job: int) -> tuple[int, ...]:
    """Frames with a delivered copy that is not final yet, in frame order."""
    return tuple(sorted(_job(state, job).frames.copy))


def final_copy(state: Requester, job: int, frame: int) -> FinalFrame | None:
    """The accepted copy of ``frame`` once it is final (serve only these), else None."""
    return _job(state, job).frames.final.get(frame)


def holder_of(state: Requester, job: int, friend: str, frame: int) -> int | None:
    """The live task of ``friend`` that still waits for ``frame``, if any."""
    t = _job(state, job).tasks
    for task in sorted(t.live_of.get(friend, ())):
        if frame in t.live.get(task, ()):
            return task
    return None


def task_friend(state: Requester, job: int, task: int) -> str | None:
    """The friend a task was assigned to, live or not; None: no such task."""
    t = _job(state, job).tasks.by_number.get(task)
    return None if t is None else t.friend


def live_tasks(state: Requester, job: int, friend: str) -> frozenset[int]:
    return _job(state, job).tasks.live_of.get(friend, frozenset())


def silent_candidates(state: Requester, job: int) -> tuple[str, ...]:
    """Active friends holding no live task: the ones a shell drops once they stop asking (none once finished)."""
    j = _job(state, job)
    if j.phase != Phase.RUNNING:
        return ()
    return tuple(f for f in j.active() if not j.tasks.live_of.get(f))


def friend_status(state: Requester, job: int, friend: str) -> FriendStatus | None:
    rec = _job(state, job).friends.get(friend)
    return None if rec is None else rec.status


def outlook(state: Requester, job: int, friend: str) -> Outlook:
    j = _job(state, job)
    rec = j.friends.get(friend)
    if rec is None:
        return Outlook.DONE
    if rec.status == FriendStatus.EVICTED:
        return Outlook.EVICTED
    if j.phase != Phase.RUNNING:
        return Outlook.DONE
    return Outlook.WORK if j.tasks.live_of.get(friend) else Outlook.WAIT


def progress(state: Requester, job: int) -> tuple[FriendProgress, ...]:
    """Per friend: copies delivered, pending and final, checks paid, status. O(M)."""
    j = _job(state, job)
    pending: dict[str, int] = {}
    final: dict[str, int] = {}
    for ff in j.frames.copy.values():
        pending[ff.friend] = pending.get(ff.friend, 0) + 1
    for ff in j.frames.final.values():
        final[ff.friend] = final.get(ff.friend, 0) + 1
    return tuple(
        FriendProgress(
            friend=f,
            owner=rec.owner,
            status=rec.status,
            delivered=j.frames.delivered.get(f, 0),
            pending=pending.get(f, 0),
            final=final.get(f, 0),
            checks_paid=j.escrow.paid.get(f, 0),
            evicted=rec.status == FriendStatus.EVICTED,
        )
        for f, rec in j.friends.items()
    )


def summary(state: Requester, job: int) -> JobSummary:
    """The job at a glance. O(M + checks)."""
    j = _job(state, job)
    outcomes = [c.outcome for c in j.checks.by_number.values()]
    return JobSummary(
        job=j.job,
        phase=j.phase,
        total=len(j.frames.numbers),
        delivered=len(j.frames.copy) + len(j.frames.final),
        final=tuple(j.frames.final),
        checks=len(outcomes),
        resolved=sum(1 for o in outcomes if o is not None),
        disagreements=sum(1 for o in outcomes if o is not None and o not in (Outcome.AGREED, Outcome.VOID)),
        arbitrations=j.checks.arbitrations,
        evicted=tuple(j.checks.evictions),
        stalled=j.wanted and not j.active(),
        own_renders=j.checks.own_checks + j.checks.arbitrations,
        spot_checks=j.checks.spot_checks,
        failure=j.failure,
        failure_cause=j.failure_cause,
        recalled=tuple(n for n in j.frames.recalled if n not in j.frames.final),
        provisional=len(j.frames.ready),
    )


def recalled(state: Requester, job: int) -> dict[int, FinalFrame | None]:
    """Frames withdrawn after being final (Rule 15), in frame order: each maps to its final copy now (serve it in
    place of the one withdrawn) or None while it is being rendered or judged again (tell the client it is void)."""
    j = _job(state, job)
    return {n: j.frames.final.get(n) for n in sorted(j.frames.recalled)}


def starved(state: Requester, job: int) -> str:
    """Why a running job cannot go on with the friends it has (Rule 16), or "" while it can: every friend is
    gone, evicted, or an untrusted one the requester will check no more. The shell asks the master for others
    (``MoreFriendsWanted``) and ends the job with this reason when none come."""
    j = _job(state, job)
    return _failures.starved_reason(j) if j.phase == Phase.RUNNING else ""


def queued(state: Requester, job: int) -> tuple[int, ...]:
    """Frames waiting for a friend, in frame order."""
    return tuple(_job(state, job).tasks.queue)


def holders(state: Requester, job: int) -> dict[int, frozenset[str]]:
    """Frame -> the friends whose live render or backup task has not delivered it yet (the scheduler's index)."""
    t = _job(state, job).tasks
    return {frame: frozenset(t.by_number[n].friend for n in tasks) for frame, tasks in t.holders.items() if tasks}


def checks(state: Requester, job: int) -> tuple[Check, ...]:
    """Every check of the job (immutable records), in number order."""
    return tuple(c for _, c in sorted(_job(state, job).checks.by_number.items()))


def checks_in(state: Requester, job: int, states: Collection[CheckState]) -> list[Check]:
    """The job's checks in one of ``states``, in number order (a job of many tiles holds thousands of checks)."""
    return [c for c in _job(state, job).checks.by_number.values() if c.state in states]


def check_of(state: Requester, job: int, check: int) -> Check | None:
    """One check by number, or None."""
    return _job(state, job).checks.by_number.get(check)


def window_of(state: Requester, job: int, task: int) -> CropWindow | None:
    """The secret window a crop-check task renders, or None: the task renders whole frames (Rule 10)."""
    t = _job(state, job).tasks.by_number.get(task)
    if t is None or len(t.checks) != 1:
        return None
    return _job(state, job).checks.by_number[t.checks[0]].window


def is_check_task(state: Requester, job: int, task: int) -> bool:
    """Whether ``task`` renders checks of other friends' frames (crops or whole frames): its frames close batches."""
    t = _job(state, job).tasks.by_number.get(task)
    return t is not None and bool(t.checks)


def verifier_of(state: Requester, job: int, subject: str) -> str | None:
    """Who would render ``subject``'s next check now (Rule 5); None: the requester itself."""
    return _checks.checker(_job(state, job), subject)


def report(state: Requester, job: int) -> JobReport | None:
    """The report of a finished, cancelled or failed job, else None."""
    return _job(state, job).report


def evictions(state: Requester, job: int) -> dict[str, Evidence]:
    """Evicted friend -> the evidence that convicted it, in eviction order."""
    return dict(_job(state, job).checks.evictions)


def points(state: Requester, job: int) -> tuple[int, int]:
    """(escrowed, earned so far): M + the check budget; final frames and paid checks of friends not evicted."""
    j = _job(state, job)
    if j.report is not None:
        return j.report.escrow, sum(j.report.payouts.values())
    evicted = {f for f, rec in j.friends.items() if rec.status == FriendStatus.EVICTED}
    earned = sum(1 for ff in j.frames.final.values() if ff.friend not in evicted)
    paid = sum(n for f, n in j.escrow.paid.items() if f not in evicted)
    return len(j.frames.numbers) + j.escrow.budget, earned + paid


def tile_grid(state: Requester, job: int) -> TileGrid | None:
    """How the job's frames are split into tiles (Rule 20: its "frames" are then work units); None: whole frames."""
    return _job(state, job).settings.tiles


def windows_ahead(state: Requester, job: int) -> dict[int, CropWindow]:
    """Work units handed out whose crop check the requester is sure to render alone, and that check's window, drawn
    ahead (``JobSettings.windows_ahead``): the requester renders them beside the friends' tiles. Empty for other jobs."""
    return _draws.windows_ahead(_job(state, job))


def own_renders_ahead(state: Requester) -> float:
    """Rule 21: the requester's own window renders that frames already handed out will need, expected: every frame
    in a live render task or an open batch of a friend, times the chance its batch is spotted (1 for its first in the
    job and while probationary) and the share of a spotted batch the requester renders (all of it for a friend only
    one account may check)."""
    ahead = 0.0
    for j in state.jobs.values():
        s = j.settings
        if j.phase != Phase.RUNNING or not (s.crop_checks and s.checks_per_friend):
            continue
        share = min(1.0, s.spots_per_batch / s.batch_size)
        for friend in j.tasks.live_of:
            frames = _tasks.rendering(j, friend) + len(j.checks.open_batch.get(friend, ()))
            if frames:
                ahead += frames * (1.0 if _draws.spotted_whole(j, friend) else share * _draws.next_spot_chance(j, friend))
    return ahead


def spotted_always(state: Requester, job: int, friend: str) -> bool:
    """Rule 21: whether every batch ``friend`` renders next is the requester's to check (probationary, its first batch
    in the job, or only one account may check it): only such friends are held back while the requester is behind, so a
    flood of fresh accounts never holds back a friend whose frames seldom wait on the requester."""
    j = _job(state, job)
    s = j.settings
    if not (s.crop_checks and s.checks_per_friend) or friend not in j.friends:
        return False
    return _draws.spotted_whole(j, friend) or _draws.next_spot_chance(j, friend) >= 1.0


def check_takers(state: Requester, job: int) -> frozenset[str]:
    """The friends a pending check would be handed to if they asked now (Rule 4): a friend outside it, holding no
    live task, gets nothing from an ask that is not admitted (Rule 21), so the shell need not decide that ask."""
    j = _job(state, job)
    pools: dict[str, tuple[str, ...]] = {}
    takers = (_draws.check_verifier(j, j.checks.by_number[cid], pools) for cid in j.checks.pending)
    return frozenset(f for f in takers if f is not None)
