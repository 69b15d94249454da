"""The words the job's events carry: each a ``StrEnum`` whose values are the strings old logs hold."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CheckTiming", "TaskKind", "CheckKind", "Role", "DropReason", "Verdict", "VERDICTS", "Against", "Purpose", "Outcome", "Judgement", "Failure"]


class CheckTiming(StrEnum):
    END = "end"  # test frames over a friend's whole share (the paper)
    BATCH = "batch"  # test frames per batch of delivered frames


class TaskKind(StrEnum):
    RENDER = "render"
    CHECK = "check"
    BACKUP = "backup"


class CheckKind(StrEnum):
    TEST = "test"  # drawn from a batch
    PAIR = "pair"  # two copies of a backed-up frame


class Role(StrEnum):
    """What a delivered copy became."""

    CANDIDATE = "candidate"
    PAIR = "pair"
    CHECK = "check"
    DUPLICATE = "duplicate"
    UNNEEDED = "unneeded"  # its live check task's check was voided meanwhile
    LATE = "late"  # its task was dropped


class DropReason(StrEnum):
    DEADLINE = "deadline"
    GONE = "gone"
    RETURNED = "returned"
    EVICTED = "evicted"
    REPLACED = "replaced"


class Verdict(StrEnum):
    IDENTICAL = "identical"
    AGREE = "agree"
    DISAGREE = "disagree"


VERDICTS = tuple(Verdict)


class Against(StrEnum):
    """What a comparison is of: the two copies, or the arbitration render against one party."""

    PAIR = "pair"
    SUBJECT = "subject"
    VERIFIER = "verifier"
    FRAME = "frame"  # the requester's own whole frame against the subject's (Rule 19)


class Purpose(StrEnum):
    CHECK = "check"
    ARBITRATION = "arbitration"
    FRAME = "frame"  # the whole frame of a crop check whose window found its subject wrong (Rule 19)


class Outcome(StrEnum):
    AGREED = "agreed"
    SUBJECT_WRONG = "subject_wrong"
    VERIFIER_WRONG = "verifier_wrong"
    BOTH_WRONG = "both_wrong"
    CALIBRATION = "calibration"
    VOID = "void"


class Judgement(StrEnum):
    """A party's image against the arbitration render."""

    NONE = ""  # not arbitrated
    RIGHT = "right"  # agrees
    CLOSE = "close"  # within the calibration tier
    WRONG = "wrong"  # a cheat


class Failure(StrEnum):
    """Why a job failed (Rules 17 and 18)."""

    RENDER = "render"  # friends of two owners (or every owner) could not render the file, alike
    STARVED = "starved"  # no friend could go on with it, and the master granted none that could in time
