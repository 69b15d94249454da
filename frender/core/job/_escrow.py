"""Escrow: the check budget the master escrowed, what is drawn on it, and the job's report (Rule 7).

Invariants: the room left in the budget is computed in one place, ``room``;
check renders are drawn only within it, so the report never pays beyond the
escrow; an evicted friend is paid nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from attrs import Factory, define

from frender.core.job._states import FriendStatus
from frender.core.job.events import (
    CheckResolved,
    ChecksDrawn,
    CopyReceived,
    FriendsJoined,
    JobReport,
    Outcome,
    Role,
    TaskKind,
)

if TYPE_CHECKING:
    from frender.core.job._job import Job

__all__ = ["Escrow", "Use", "room", "report", "EVOLVERS"]


@define(kw_only=True)
class Escrow:
    checks_escrowed: int  # s: check renders escrowed per friend granted
    granted: int = 0  # friends granted so far
    used: int = 0  # check renders drawn on the budget (test frames, pairs), voided ones given back
    paid: dict[str, int] = Factory(dict)  # verifier -> check renders not found wrong
    outcomes: dict[str, tuple[bool, ...]] = Factory(dict)  # friend -> clean or not, per check it took part in

    @property
    def budget(self) -> int:
        return self.checks_escrowed * self.granted

    def clone(self) -> Escrow:
        return Escrow(
            checks_escrowed=self.checks_escrowed, granted=self.granted, used=self.used, paid=self.paid.copy(), outcomes=self.outcomes.copy()
        )


class Use(StrEnum):
    """What a check render on the budget is for; each keeps back what the ones after it need."""

    DRAW = "draw"  # test frames drawn over a closed batch
    PAIR = "pair"  # a second copy of a frame becomes a check: keeps the reserve for undrawn batches
    BACKUP = "backup"  # a backup copy: keeps the reserve, and the frames promised to live backups


def room(j: Job, use: Use) -> int:
    """Rule 7: the check renders the escrow can still pay for, for ``use``. The one place it is computed."""
    left = j.escrow.budget - j.escrow.used
    if use is Use.DRAW:
        return left
    if j.settings.crop_checks:  # every frame delivered or in hand will be checked once
        t = j.tasks
        left -= sum(len(frames) for frames in j.checks.open_batch.values())
        left -= sum(len(t.live[n]) for n, task in t.by_number.items() if n in t.live and task.kind != _CHECK_TASK)
    else:
        left -= j.settings.checks_per_friend * sum(1 for f, rec in j.friends.items() if rec.checked and _undrawn_work(j, f, rec.status))
    if use is Use.BACKUP:
        left -= sum(len(j.tasks.live[t]) for t in j.tasks.backed.values())
    return left


_CHECK_TASK = TaskKind.CHECK
_EVICTED = FriendStatus.EVICTED  # a module constant: enum members are slow to look up on their class


def _undrawn_work(j: Job, friend: str, status: FriendStatus) -> bool:
    """A friend whose checks are not all drawn yet: it has an open batch or renders."""
    if status == _EVICTED:
        return False
    return bool(j.checks.open_batch.get(friend)) or j.tasks.renders(friend)


def report(j: Job) -> JobReport:
    """One point per final frame (a tile: its share by area, Rule 20), one per check render not found wrong, within
    the escrow; evicted friends nothing."""
    frame_points: dict[str, int] = {}
    grid = j.settings.tiles
    shares = grid.points() if grid is not None else ()  # Rule 20: a tile is paid its share of its frame's area
    for ff in j.frames.final.values():
        frame_points[ff.friend] = frame_points.get(ff.friend, 0) + (shares[grid.tile_of(ff.frame)] if grid is not None else 1)
    evicted = set(j.checks.evictions)
    check_points: dict[str, int] = {}
    left = j.escrow.budget  # drawing already kept within it; this only makes it plain
    for friend, points in sorted(j.escrow.paid.items()):
        if friend not in evicted:
            check_points[friend] = min(points, left)
            left -= check_points[friend]
    payouts = {
        f: frame_points.get(f, 0) + check_points.get(f, 0)
        for f in sorted(set(frame_points) | set(check_points))
        if f not in evicted and frame_points.get(f, 0) + check_points.get(f, 0) > 0
    }
    caught = sorted(evicted)
    return JobReport(
        job=j.job,
        frames=len(j.frames.numbers),
        payouts=payouts,
        frame_points=frame_points,
        check_points=check_points,
        check_outcomes=dict(sorted(j.escrow.outcomes.items())),
        evictions=dict(j.checks.evictions),
        calibrations=tuple(sorted(j.checks.calibrated)),
        arbitrations=j.checks.arbitrations,
        own_checks=j.checks.own_checks,
        spot_checks=j.checks.spot_checks,
        escrow=len(j.frames.numbers) + j.escrow.budget,
        caught_owners={f: j.friends[f].owner for f in caught},
        forged={f: tuple(sorted(set(j.checks.forged[f]))) for f in caught if f in j.checks.forged},
        forfeited={f: j.frames.delivered.get(f, 0) + j.escrow.paid.get(f, 0) for f in caught},
        recalled=tuple(sorted(j.frames.recalled)),
    )


# ---------------------------------------------------------------- evolving

_PAID = frozenset({Outcome.AGREED, Outcome.SUBJECT_WRONG, Outcome.CALIBRATION})  # the verifier was not found wrong
_SUBJECT_CLEAN = {Outcome.AGREED: True, Outcome.VERIFIER_WRONG: True, Outcome.SUBJECT_WRONG: False, Outcome.BOTH_WRONG: False}


def _friends_joined(j: Job, e: FriendsJoined) -> None:
    j.escrow.granted += len(e.friends)


def _copy_received(j: Job, e: CopyReceived) -> None:
    if e.role == Role.PAIR:
        j.escrow.used += 1


def _checks_drawn(j: Job, e: ChecksDrawn) -> None:
    j.escrow.used += len(e.tests) - len(e.own)  # the requester's own renders are unpaid


def _check_resolved(j: Job, e: CheckResolved) -> None:
    es = j.escrow
    c = j.checks.by_number[e.check]
    if e.outcome == Outcome.VOID:
        if not c.by_requester:  # those were never drawn on the budget
            es.used -= 1
        return
    if c.reopened:  # judged again by the requester: its verifier was paid (or not) the first time
        if e.outcome in (Outcome.VERIFIER_WRONG, Outcome.BOTH_WRONG) and e.verifier is not None:
            es.outcomes[e.verifier] = es.outcomes.get(e.verifier, ()) + (False,)
        return
    clean = _SUBJECT_CLEAN.get(e.outcome)
    if clean is not None:
        es.outcomes[e.subject] = es.outcomes.get(e.subject, ()) + (clean,)
    if e.verifier is not None:
        if e.outcome in (Outcome.VERIFIER_WRONG, Outcome.BOTH_WRONG):
            es.outcomes[e.verifier] = es.outcomes.get(e.verifier, ()) + (False,)
        elif e.outcome in _PAID:
            es.paid[e.verifier] = es.paid.get(e.verifier, 0) + 1


EVOLVERS: dict[type, Callable[[Job, Any], None]] = {
    FriendsJoined: _friends_joined,
    CopyReceived: _copy_received,
    ChecksDrawn: _checks_drawn,
    CheckResolved: _check_resolved,
}
