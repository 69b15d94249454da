"""The master's state machines as data: (state, step) -> next state, and the one guard over them.

Invariants: a job's state, a friend's hold and a friend's standing in a job
change only through a step its table allows; a miss raises ``Rejected`` naming
the thing, its state and the step, and changes nothing (the deciders play their
events on a draft, whose evolvers ask the same tables). Commands are steps too
(``"RequestFriends"``, ``"ReportJob"``): a closed job takes none.

The tables are the job core's habit (``frender.core.job._states``) with what the
master needs beside it: a rejection code per state (a closed job answers
``closed``, which requesters rely on) and a hint saying what to do.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

from frender.core._decider import Rejected

__all__ = ["JobState", "FriendState", "MemberState", "Table", "JOB", "FRIEND", "MEMBER"]

S = TypeVar("S", bound=StrEnum)


class JobState(StrEnum):
    OPEN = "open"  # granted all the friends it asked for so far
    WAITING = "waiting"  # its last grant fell short: it waits for the rest (Rule 10)
    CLOSED = "closed"  # its closing report came: paid, refunded, its friends released


class FriendState(StrEnum):
    """A friend's hold (stored: FREE or HELD), and at a given time also AWAY (soft, Rule 6: never stored)."""

    FREE = "free"  # holds no job (at a time: or its hold expired), and is live and ready
    HELD = "held"  # holds ``FriendRecord.job`` until ``held_until`` (Rule 3)
    AWAY = "away"  # not live, busy, or away by its own word (paused, outside its schedule): takes no job (Rule 4)


class MemberState(StrEnum):
    """A friend's standing in one job it was assigned to (the master evicts nobody farm-wide: Rule 9 fines its owner)."""

    ASSIGNED = "assigned"
    PAID = "paid"  # points paid by a report (Rule 9: only the closing one since)
    EVICTED = "evicted"  # found wrong: paid nothing, fined (Rule 9)


class Table(Generic[S]):
    """Allowed transitions of one kind of thing; a miss is ``Rejected`` with the state's code (else ``code``) and ``hint``."""

    def __init__(self, code: str, steps: dict[tuple[S, str], S], *, codes: dict[S, str] | None = None, hint: str = "") -> None:
        self.code = code
        self.steps = steps
        self.codes = codes or {}
        self.hint = hint

    def allows(self, state: S, step: str) -> bool:
        return (state, step) in self.steps

    def next(self, state: S, step: str, thing: str, key: object, job: int | None = None) -> S:
        """The state after ``step``; a miss raises one error naming the thing (``job 3``, ``friend 'ann/pc' of job 3``),
        its state and the step."""
        nxt = self.steps.get((state, step))
        if nxt is None:
            who = f"{thing} {key!r}" + ("" if job is None else f" of job {job}")
            hint = f": {self.hint}" if self.hint else ""
            raise Rejected(self.codes.get(state, self.code), f"can't handle {step} when {who} is {state}{hint}") from None
        return nxt


J = JobState
# A job takes requests and reports until it closes; each grant leaves it open or waiting (Rules 10, 11).
JOB: Table[JobState] = Table(
    "job-state",
    {
        **{(state, command): state for state in (J.OPEN, J.WAITING) for command in ("RequestFriends", "ReportJob")},
        **{(state, "grant"): J.OPEN for state in (J.OPEN, J.WAITING)},
        **{(state, "grant short"): J.WAITING for state in (J.OPEN, J.WAITING)},
        **{(state, "close"): J.CLOSED for state in (J.OPEN, J.WAITING)},
    },
    codes={J.CLOSED: "closed"},
)

F = FriendState
# Rule 3: a free friend is assigned; a held one is released (its heartbeat says done, or its job closed) or its hold expires.
# A registered friend heartbeats and re-registers in any state.
FRIEND: Table[FriendState] = Table(
    "friend-state",
    {
        (F.FREE, "assign"): F.HELD,
        (F.HELD, "release"): F.FREE,
        (F.HELD, "expire"): F.FREE,
        **{(state, command): state for state in F for command in ("Heartbeat", "RegisterFriend")},
    },
)

M = MemberState
# Rule 9: an evicted friend gets nothing, and a paid friend is not evicted after; outcomes are reported for anyone.
MEMBER: Table[MemberState] = Table(
    "evicted-paid",
    {
        (M.ASSIGNED, "pay"): M.PAID,
        (M.PAID, "pay"): M.PAID,  # logs from before Rule 9 paid by several reports
        (M.ASSIGNED, "evict"): M.EVICTED,
        (M.EVICTED, "evict"): M.EVICTED,  # named again by a later report: nothing more happens
    },
    hint="an evicted friend gets nothing for the job, and a paid friend is not evicted after",
)
