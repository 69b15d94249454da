"""The commands a shell sends the job's decider; each carries ``job`` and ``now``.

Invariants: a command is a request, never a fact: the decider may refuse it
(``Rejected``) and then nothing changes. Those that may draw carry ``entropy``
(``secrets.token_hex(16)``), which the events record, so replay never needs it.
"""

from __future__ import annotations

from attrs import Factory, frozen

from frender.core.job.events import Against, GrantedFriend, JobSettings, Verdict

__all__ = [
    "StartJob",
    "AddFriends",
    "AskForTask",
    "DeliverFrame",
    "RecordComparison",
    "RecordOwnRender",
    "Tick",
    "DropFriend",
    "ReturnTask",
    "CancelJob",
    "COMMANDS",
]


@frozen(kw_only=True)
class StartJob:
    job: int
    frames: tuple[int, ...]  # the chosen frames, e.g. tuple(range(1, 241))
    settings: JobSettings = Factory(JobSettings)
    checks_escrowed: int = 1  # the checks_per_friend the master escrowed per granted friend
    now: float
    entropy: str = ""  # the job's seed of windows drawn ahead (JobSettings.windows_ahead): a secret, random string


@frozen(kw_only=True)
class AddFriends:
    job: int
    friends: tuple[GrantedFriend, ...]
    entropy: str
    now: float


@frozen(kw_only=True)
class AskForTask:
    job: int
    friend: str
    keeping: tuple[int, ...] = ()  # live tasks the friend is still rendering (Rule 9)
    sending: tuple[int, ...] = ()  # live tasks it has rendered whole and is only sending: kept, not counted ahead (Rule 9)
    # Rule 21: False while the requester's own checks are behind: the friend gets checks only, no frames to render.
    admit: bool = True
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class DeliverFrame:
    job: int
    friend: str
    task: int
    frame: int
    sha256: str = ""
    ok: bool = True  # False: did not decode, wrong size, or lost in transfer (a fault)
    reason: str = ""
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class RecordComparison:
    job: int
    check: int
    against: Against = Against.PAIR  # the last two: the arbitration render vs that party
    a_sha256: str  # the two copies compared, echoed from ComparisonRequested: a stale answer is refused
    b_sha256: str
    verdict: Verdict
    fraction_off: float = 0.0
    max_diff: int = 0
    psnr: float = 99.0
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class RecordOwnRender:
    job: int
    check: int
    sha256: str
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class Tick:
    job: int
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class DropFriend:
    job: int
    friend: str
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class ReturnTask:
    job: int
    friend: str
    task: int
    error: str = ""  # the friend's Blender could not render it, and said this (a RenderFailed)
    entropy: str = ""
    now: float


@frozen(kw_only=True)
class CancelJob:
    """The submitter stops the job: its friends are released, final frames kept, the unearned escrow refunded."""

    job: int
    entropy: str = ""
    now: float


COMMANDS: tuple[type, ...] = (
    StartJob,
    AddFriends,
    AskForTask,
    DeliverFrame,
    RecordComparison,
    RecordOwnRender,
    Tick,
    DropFriend,
    ReturnTask,
    CancelJob,
)
