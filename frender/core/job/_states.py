"""The job's state machines as data: (state, step) -> next state, and the one guard over them.

Invariants: a state changes only through a step the table allows; a miss raises
``Rejected`` naming the job, the state and the step, and nothing is changed (the
deciders ask before they emit, the evolvers apply what the deciders emitted).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Generic, TypeVar

from frender.core._decider import Rejected

__all__ = ["Phase", "FriendStatus", "CheckState", "Step", "Table", "JOB", "FRIEND", "CHECK"]

S = TypeVar("S", bound=StrEnum)


class Phase(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"  # its submitter stopped it: final frames stay final, the rest is refunded
    FAILED = "failed"  # its file cannot render (the same error from several friends): as cancelled, with the error


class FriendStatus(StrEnum):
    ACTIVE = "active"
    GONE = "gone"
    EVICTED = "evicted"


class CheckState(StrEnum):
    PENDING = "pending"  # waiting for a verifier
    ASSIGNED = "assigned"  # in a verifier's check task
    OWN = "own"  # the requester renders it (no eligible verifier)
    COMPARING = "comparing"  # both copies in; the comparator is asked
    COMPARED = "compared"  # the pair's figures are in (never outlives the decision that made it)
    ARBITRATING = "arbitrating"  # the copies disagree; the requester renders the frame
    JUDGING = "judging"  # the arbitration render is in; both parties are compared with it
    SUBJECT_JUDGED = "subject_judged"  # the subject's comparison is in, the verifier's is awaited
    VERIFIER_JUDGED = "verifier_judged"  # and the other way round
    JUDGED = "judged"  # both are in (never outlives the decision that made it)
    FRAMING = "framing"  # a window found the subject wrong: the requester renders the whole frame (Rule 19)
    FRAME_COMPARING = "frame_comparing"  # the requester's whole frame is in; it is compared with the subject's
    FRAME_JUDGED = "frame_judged"  # that comparison is in (never outlives the decision that made it)
    RESOLVED = "resolved"


class Step(StrEnum):
    """What happens to a check."""

    ASSIGN = "assign"
    OWN = "own"
    UNASSIGN = "unassign"
    COPY = "copy"
    RENDERED = "rendered"
    COMPARE_PAIR = "compare pair"
    COMPARE_SUBJECT = "compare subject"
    COMPARE_VERIFIER = "compare verifier"
    ARBITRATE = "arbitrate"
    FRAME = "frame"
    COMPARE_FRAME = "compare frame"
    RESOLVE = "resolve"
    VOID = "void"


class Table(Generic[S]):
    """Allowed transitions of one kind of thing; ``code`` is the rejection's stable code."""

    def __init__(self, code: str, steps: dict[tuple[S, str], S]) -> None:
        self.code = code
        self.steps = steps

    def allows(self, state: S, step: str) -> bool:
        return (state, step) in self.steps

    def next(self, state: S, step: str, job: int, thing: str = "", key: object = None) -> S:
        """The state after ``step``; a miss raises one error naming the job (and the thing in it), the state and the step."""
        nxt = self.steps.get((state, step))
        if nxt is None:
            who = f"job {job}" if key is None else f"{thing} {key!r} of job {job}"
            raise Rejected(self.code, f"can't handle {step} when {who} is {state}") from None
        return nxt


# A job handles the commands while it runs, none once it finished or was cancelled (command names are the steps).
JOB: Table[Phase] = Table(
    "job-state",
    {
        **{
            (Phase.RUNNING, name): Phase.RUNNING
            for name in (
                "AddFriends", "AskForTask", "DeliverFrame", "RecordComparison", "RecordOwnRender", "Tick", "DropFriend", "ReturnTask", "CancelJob",
            )
        },
        (Phase.RUNNING, "finish"): Phase.FINISHED,
        (Phase.RUNNING, "cancel"): Phase.CANCELLED,
        (Phase.RUNNING, "fail"): Phase.FAILED,
    },
)

# A friend asks (and so comes back if it was gone), leaves, or is evicted for good.
FRIEND: Table[FriendStatus] = Table(
    "friend-state",
    {
        (FriendStatus.ACTIVE, "ask"): FriendStatus.ACTIVE,
        (FriendStatus.GONE, "ask"): FriendStatus.ACTIVE,
        (FriendStatus.ACTIVE, "leave"): FriendStatus.GONE,
        (FriendStatus.ACTIVE, "evict"): FriendStatus.EVICTED,
        (FriendStatus.GONE, "evict"): FriendStatus.EVICTED,
    },
)

C = CheckState
CHECK: Table[CheckState] = Table(
    "check-state",
    {
        (C.PENDING, Step.ASSIGN): C.ASSIGNED,
        (C.PENDING, Step.OWN): C.OWN,
        (C.ASSIGNED, Step.UNASSIGN): C.PENDING,
        (C.COMPARING, Step.UNASSIGN): C.PENDING,  # the verifier's copy is void: someone renders it again
        (C.ASSIGNED, Step.COPY): C.COMPARING,
        (C.OWN, Step.RENDERED): C.COMPARING,
        (C.COMPARING, Step.COMPARE_PAIR): C.COMPARED,
        (C.COMPARED, Step.RESOLVE): C.RESOLVED,
        (C.COMPARED, Step.ARBITRATE): C.ARBITRATING,
        (C.ARBITRATING, Step.RENDERED): C.JUDGING,
        (C.JUDGING, Step.COMPARE_SUBJECT): C.SUBJECT_JUDGED,
        (C.JUDGING, Step.COMPARE_VERIFIER): C.VERIFIER_JUDGED,
        (C.SUBJECT_JUDGED, Step.COMPARE_VERIFIER): C.JUDGED,
        (C.VERIFIER_JUDGED, Step.COMPARE_SUBJECT): C.JUDGED,
        (C.JUDGED, Step.RESOLVE): C.RESOLVED,
        (C.COMPARED, Step.FRAME): C.FRAMING,  # the requester's own window, or a window of a job whose crops were found unequal
        (C.JUDGED, Step.FRAME): C.FRAMING,
        (C.FRAMING, Step.RENDERED): C.FRAME_COMPARING,
        (C.FRAME_COMPARING, Step.COMPARE_FRAME): C.FRAME_JUDGED,
        (C.FRAME_JUDGED, Step.RESOLVE): C.RESOLVED,
        **{(state, Step.VOID): C.RESOLVED for state in C if state is not C.RESOLVED},
    },
)
