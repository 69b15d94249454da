"""The aggregate: a ``Requester`` holds one ``Job`` per job number; a job is its roster plus four sub-machines.

Invariants: each sub-machine's state lives in its own record and is changed only
by that sub-machine's evolvers (tasks, checks, frames, escrow); the job itself
keeps only what all of them read: its settings, its phase and its roster of
friends. Records inside are immutable or copied on ``clone``, so a decision's
draft costs a few ``dict.copy`` calls, not a deep copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import Factory, define, frozen

from frender.core.job._checks import Checks
from frender.core.job._escrow import Escrow
from frender.core.job._frames import Frames
from frender.core.job._states import FriendStatus, Phase
from frender.core.job._tasks import Tasks
from frender.core.job.events import DropReason, Failure, JobReport, JobSettings, TaskDropped

__all__ = ["Friend", "Job", "Requester", "Draft"]

# Enum members cost about half a microsecond to look up on their class (Python 3.11): hot loops use this.
_ACTIVE = FriendStatus.ACTIVE


@frozen(kw_only=True)
class Friend:
    friend: str
    owner: str
    clean_run: int
    checked: bool  # adaptive checking drew this friend's frames for checks in this job
    status: FriendStatus = FriendStatus.ACTIVE
    reputation: int = 0  # the master's: the requester's own checks passed in a row


@define(kw_only=True)
class Job:
    """One job: settings, phase and roster, and the state of its four sub-machines."""

    job: int
    settings: JobSettings
    adaptive: bool
    phase: Phase = Phase.RUNNING
    friends: dict[str, Friend] = Factory(dict)
    wanted: bool = False  # more friends were asked for and none joined yet
    report: JobReport | None = None
    render_errors: dict[str, frozenset[str]] = Factory(dict)  # a friend's render error -> the owners that reported it
    failure: str = ""  # why the job failed: the render error its friends agreed on, or why it starved
    failure_cause: Failure = Failure.RENDER
    starving_since: float | None = None  # Rule 18: when it first asked for friends since a friend last took frames
    seed: str = ""  # the secret seed of windows drawn ahead (JobSettings.windows_ahead); "": none
    tasks: Tasks
    checks: Checks
    frames: Frames
    escrow: Escrow

    def clone(self) -> Job:
        """A draft: every container copied (their items are immutable), so deciding never touches the state."""
        return Job(
            job=self.job,
            settings=self.settings,
            adaptive=self.adaptive,
            phase=self.phase,
            friends=self.friends.copy(),
            wanted=self.wanted,
            report=self.report,
            render_errors=self.render_errors.copy(),
            failure=self.failure,
            failure_cause=self.failure_cause,
            starving_since=self.starving_since,
            seed=self.seed,
            tasks=self.tasks.clone(),
            checks=self.checks.clone(),
            frames=self.frames.clone(),
            escrow=self.escrow.clone(),
        )

    def active(self) -> list[str]:
        return [f for f, rec in self.friends.items() if rec.status == _ACTIVE]

    def deadline(self, friend: str, now: float, frames: int) -> float:
        """Rule 3: when a task of ``frames`` frames handed to ``friend`` at ``now`` is given up. A friend delivers
        in turn, so the estimate counts the frames it has still to deliver before it: a task it renders, asked
        ahead of, or files still on their way (Rule 9)."""
        t = self.tasks
        before = sum(len(t.live[n]) for n in t.live_of.get(friend, ()))
        return self.settings.deadline(now, frames + before)


@define(kw_only=True)
class Requester:
    """The requester process's aggregate: its jobs by number."""

    jobs: dict[int, Job] = Factory(dict)

    def clone(self) -> Requester:
        """A draft of every job (``Job.clone``): deciding on it never touches this state."""
        return Requester(jobs={number: job.clone() for number, job in self.jobs.items()})


class Draft:
    """A decision in progress: events played on a copy of the job as they are emitted."""

    def __init__(self, job: Job, now: float, entropy: str, play: Callable[[Job, Any], None]) -> None:
        self.job = job
        self.now = now
        self.entropy = entropy
        self.events: list[object] = []
        self._play = play

    def emit(self, event: object) -> None:
        self.events.append(event)
        self._play(self.job, event)

    def drop(self, task: int, why: DropReason) -> None:
        """Give up a live task: its undelivered frames go back to the queue."""
        t = self.job.tasks
        self.emit(TaskDropped(job=self.job.job, task=task, friend=t.by_number[task].friend, why=why, frames=tuple(sorted(t.live[task])), now=self.now))
