"""One ``decide`` and one ``evolve`` for the requester's jobs, over the aggregate and its sub-machines.

Invariants: ``decide`` never changes the state it is given: it plays the
command on a draft (``Job.clone``) and returns the events; ``evolve`` applies a
logged event in place, each sub-machine's evolver changing only its own record,
in a fixed order (frames, tasks, checks, escrow, then the job's roster); every
state change goes through the transition tables of ``_states``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from frender.core import _circle
from frender.core._decider import Rejected
from frender.core.job import _checks, _escrow, _failures, _frames, _tasks
from frender.core.job._job import Draft, Friend, Job, Requester
from frender.core.job._states import FRIEND, JOB, FriendStatus
from frender.core.job.commands import (
    AddFriends,
    CancelJob,
    AskForTask,
    DeliverFrame,
    DropFriend,
    RecordComparison,
    RecordOwnRender,
    ReturnTask,
    StartJob,
    Tick,
)
from frender.core.job.events import (
    EVENTS,
    CheaterEvicted,
    FriendLeft,
    FriendReturned,
    FriendsJoined,
    JobCancelled,
    JobFinished,
    JobStarted,
    MoreFriendsWanted,
)

__all__ = ["decide", "evolve"]


# ---------------------------------------------------------------- evolving


def evolve(state: Requester, event: object) -> Requester:
    """Apply one logged event (in place: one task owns the state) and return the state."""
    if type(event) is JobStarted:
        _job_started(state, event)
    else:
        _play(state.jobs[event.job], event)  # type: ignore[attr-defined]
    return state


def _job_started(state: Requester, e: JobStarted) -> None:
    state.jobs[e.job] = Job(
        job=e.job,
        settings=e.settings,
        adaptive=e.adaptive,
        seed=e.seed,
        tasks=_tasks.Tasks(queue=sorted(e.frames)),
        checks=_checks.Checks(),
        frames=_frames.Frames(numbers=e.frames),
        escrow=_escrow.Escrow(checks_escrowed=e.checks_escrowed),
    )


def _friends_joined(j: Job, e: FriendsJoined) -> None:
    checked = set(e.checked)
    for g in e.friends:
        j.friends[g.friend] = Friend(friend=g.friend, owner=g.owner, clean_run=g.clean_run, checked=g.friend in checked, reputation=g.reputation)
    j.wanted = False


def _status(step: str) -> Callable[[Job, Any], None]:
    def evolve_status(j: Job, e: Any) -> None:
        rec = j.friends[e.friend]
        j.friends[e.friend] = Friend(
            friend=rec.friend, owner=rec.owner, clean_run=rec.clean_run, checked=rec.checked, reputation=rec.reputation,
            status=FRIEND.next(rec.status, step, j.job, "friend", e.friend),
        )

    return evolve_status


def _more_friends_wanted(j: Job, e: MoreFriendsWanted) -> None:
    j.wanted = True


def _job_finished(j: Job, e: JobFinished) -> None:
    j.phase = JOB.next(j.phase, "finish", j.job)
    j.report = e.report


def _job_cancelled(j: Job, e: JobCancelled) -> None:
    j.phase = JOB.next(j.phase, "cancel", j.job)
    j.report = e.report


_ROSTER: dict[type, Callable[[Job, Any], None]] = {
    FriendsJoined: _friends_joined,
    FriendLeft: _status("leave"),
    FriendReturned: _status("ask"),
    CheaterEvicted: _status("evict"),
    MoreFriendsWanted: _more_friends_wanted,
    JobFinished: _job_finished,
    JobCancelled: _job_cancelled,
}

# Per event, the evolvers of the sub-machines it touches, in a fixed order.
_PLAN: dict[type, tuple[Callable[[Job, Any], None], ...]] = {
    event: tuple(
        m[event] for m in (_frames.EVOLVERS, _tasks.EVOLVERS, _checks.EVOLVERS, _escrow.EVOLVERS, _ROSTER, _failures.EVOLVERS) if event in m
    )
    for event in EVENTS
    if event is not JobStarted
}


def _play(j: Job, event: object) -> None:
    for evolver in _PLAN[type(event)]:
        evolver(j, event)


# ---------------------------------------------------------------- deciding


def decide(state: Requester, command: object) -> list[object]:
    """The events that ``command`` causes, or Rejected; ``state`` is not changed."""
    if type(command) is StartJob:
        return _start(state, command)
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"the requester has no decision for {type(command).__name__}")
    number: int = command.job  # type: ignore[attr-defined]
    job = state.jobs.get(number)
    if job is None:
        raise Rejected("unknown-job", f"job {number} was never started here")
    JOB.next(job.phase, type(command).__name__, number)  # the guard: a finished job takes nothing
    now: float = command.now  # type: ignore[attr-defined]
    if not _finite(now):
        raise Rejected("bad-time", "now is a finite number")
    draft = Draft(job.clone(), now, getattr(command, "entropy", ""), _play)
    handler(draft, command)
    _settle(draft)
    return draft.events


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _start(state: Requester, c: StartJob) -> list[object]:
    if c.job in state.jobs:
        raise Rejected("known-job", f"job {c.job} was already started")
    if not c.frames or len(set(c.frames)) != len(c.frames) or any(not isinstance(f, int) or f < 0 for f in c.frames):
        raise Rejected("bad-frames", "a job renders one or more distinct, non-negative frame numbers")
    problems = c.settings.problems()
    if c.checks_escrowed < 0 or not _finite(c.now):
        problems.append("checks_escrowed is never negative and now is finite")
    grid = c.settings.tiles
    if grid is not None and not problems and set(c.frames) != set(grid.units(tuple({grid.frame_of(u) for u in c.frames}))):
        problems.append("a tiled job's frames are its work units, every tile of each of its frames (TileGrid.units)")
    if c.settings.windows_ahead and not c.entropy:
        problems.append("windows drawn ahead need the command's entropy (the job's secret seed)")
    if problems:
        raise Rejected("bad-settings", "; ".join(problems))
    s = c.settings
    adaptive = s.adaptive if s.adaptive is not None else len(c.frames) >= s.adaptive_from
    seed = c.entropy if s.windows_ahead else ""
    return [JobStarted(job=c.job, frames=tuple(c.frames), settings=s, checks_escrowed=c.checks_escrowed, adaptive=adaptive, now=c.now, seed=seed)]


def _add_friends(d: Draft, c: AddFriends) -> None:
    j = d.job
    names = [g.friend for g in c.friends]
    if not names or len(set(names)) != len(names) or any(not n or not g.owner for n, g in zip(names, c.friends)):
        raise Rejected("bad-friends", "a grant names one or more distinct friends, each with an owner")
    known = [n for n in names if n in j.friends]
    if known:
        raise Rejected("known-friend", f"{known} already belong to job {j.job}")
    if any(g.clean_run < 0 or g.reputation < 0 for g in c.friends):
        raise Rejected("bad-friends", "a clean run and a reputation are never negative")
    checked = tuple(
        g.friend
        for g in c.friends
        if not j.adaptive or _circle.checked_this_job(c.entropy, g.friend, g.clean_run, j.settings.trust_after)
    )
    owners = {f: rec.owner for f, rec in j.friends.items()} | {g.friend: g.owner for g in c.friends}
    members = [f for f in owners if f not in j.friends or j.friends[f].status != FriendStatus.EVICTED]
    ring = _circle.ring_order(c.entropy, sorted(members), owners.__getitem__)
    d.emit(FriendsJoined(job=j.job, friends=tuple(c.friends), checked=checked, ring=ring, now=c.now))


def _cancel(d: Draft, c: CancelJob) -> None:
    """Stop the job as it stands: final frames stay final and are paid, with the check renders that agreed;
    live tasks, candidates and open checks are abandoned, unpaid (the escrow's rest goes back to the submitter)."""
    d.emit(JobCancelled(job=d.job.job, report=_escrow.report(d.job), now=d.now))


def _return_task(d: Draft, c: ReturnTask) -> None:
    """The task goes back to the queue; with the friend's render error, that error is recorded (and may fail the job)."""
    _tasks.return_task(d, c)
    if c.error:
        _failures.render_failed(d, c.friend, c.task, c.error)


_DECIDERS: dict[type, Callable[[Draft, Any], None]] = {
    AddFriends: _add_friends,
    AskForTask: _tasks.ask,
    DeliverFrame: _frames.deliver,
    RecordComparison: _checks.record_comparison,
    RecordOwnRender: _checks.record_own_render,
    Tick: _tasks.tick,
    DropFriend: _tasks.drop_friend,
    ReturnTask: _return_task,
    CancelJob: _cancel,
}


# ---------------------------------------------------------------- policies


def _settle(d: Draft) -> None:
    """What follows from the decision: run the policies until none has more to say."""
    while JOB.allows(d.job.phase, "finish"):  # a cancelled (or finished) job has no policies left to run
        before = len(d.events)
        _checks.close_batches(d)
        _checks.orphan_checks(d)
        _frames.finalise(d)
        _want_friends(d)
        _failures.starve(d)
        _finish(d)
        if len(d.events) == before or not JOB.allows(d.job.phase, "finish"):
            return


def _want_friends(d: Draft) -> None:
    """Every friend gone (or blocked, Rule 16) with work left: ask the master for as many as the job had, evicted ones excluded."""
    j = d.job
    if j.wanted or j.escrow.granted == 0 or any(not _tasks.blocked(j, f) for f in j.active()):  # Rule 16: blocked friends cannot go on
        return
    if j.tasks.queue or j.tasks.live or j.frames.copy or j.checks.pending:
        evicted = tuple(sorted(j.checks.evictions))
        d.emit(MoreFriendsWanted(job=j.job, count=max(1, len(j.friends) - len(evicted)), exclude=evicted, now=d.now))


def _finish(d: Draft) -> None:
    j = d.job
    if len(j.frames.final) == len(j.frames.numbers):
        d.emit(JobFinished(job=j.job, report=_escrow.report(j), now=d.now))
