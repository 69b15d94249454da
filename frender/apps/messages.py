"""The application messages: what friends, requesters, clients and operators say.

Each is a frozen, tagged attrs class sent through the transports' RPC; a reply
is one of these too. A refusal is the transport's ``Refused(code, reason)``,
which the caller sees as ``RemoteError(code, reason)``. docs/protocol.md lists
them with who may send each.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import Factory, frozen

from frender import codec
from frender.core.profile import RenderProfile
from frender.transports import SignedAssignment

__all__ = [
    "Ok",
    # friend -> master
    "RegisterFriend",
    "Registered",
    "Heartbeat",
    "HeartbeatReply",
    # requester -> master
    "AskFriends",
    "FriendsGranted",
    "GrantedFriendInfo",
    "Report",
    "KnownProfiles",
    "Profiles",
    # operator -> master
    "Grant",
    "Trust",
    # anyone -> master
    "Status",
    "StatusReply",
    "FriendStatus",
    "JobStatus",
    # client -> requester
    "Submit",
    "Submitted",
    "Progress",
    "ProgressReply",
    "FriendLine",
    # friend -> requester
    "WantWork",
    "Work",
    "NoWork",
    "GiveBack",
    "FrameStored",
]


@frozen
class Ok:
    tag: ClassVar[str] = "ok.v1"


# ------------------------------------------------------------ friend -> master


@frozen(kw_only=True)
class RegisterFriend:
    """A friend announces itself under the user its key is bound to."""

    tag: ClassVar[str] = "register_friend.v1"
    user: str
    name: str  # the friend is "user/name"
    profile: RenderProfile
    capacity: int = 1


@frozen(kw_only=True)
class Registered:
    tag: ClassVar[str] = "registered.v1"
    friend: str
    heartbeat_every: float  # seconds; well inside the master's friend_timeout


@frozen(kw_only=True)
class Heartbeat:
    """I am alive. With ``wait`` > 0 and no assignment held, the reply may wait that long for one."""

    tag: ClassVar[str] = "heartbeat.v1"
    friend: str
    busy: bool = False
    last_done: int | None = None
    wait: float = 0.0


@frozen(kw_only=True)
class HeartbeatReply:
    """Holds the friend's signed assignment while it has one; ``requester`` is where to dial."""

    tag: ClassVar[str] = "heartbeat_reply.v1"
    assignment: SignedAssignment | None = None
    requester: str = ""  # frender://host:port#sha256:...


# --------------------------------------------------------- requester -> master


@frozen(kw_only=True)
class AskFriends:
    """A trusted requester asks for friends for a new job (job=None) or more for job J."""

    tag: ClassVar[str] = "ask_friends.v1"
    job: int | None = None
    submitter: str
    submitter_key: str  # proven to the requester by the client's own handshake
    frames: int
    want: int
    profile: RenderProfile
    checks_per_friend: int = 1
    exclude: tuple[str, ...] = ()
    blend_sha256: str
    address: str  # the requester's address, for the friends


@frozen(kw_only=True)
class GrantedFriendInfo:
    tag: ClassVar[str] = "granted_friend.v1"
    friend: str
    user: str
    key: str


@frozen(kw_only=True)
class FriendsGranted:
    tag: ClassVar[str] = "friends_granted.v1"
    job: int
    friends: tuple[GrantedFriendInfo, ...]
    shortfall: int


@frozen(kw_only=True)
class Report:
    """The requester's account of a job (see core.master.ReportJob)."""

    tag: ClassVar[str] = "report.v1"
    job: int
    payouts: dict[str, int] = Factory(dict)
    check_outcomes: dict[str, tuple[bool, ...]] = Factory(dict)
    evicted: tuple[str, ...] = ()
    head_seq: int = 0
    head_hash: str = ""
    close: bool = True


@frozen
class KnownProfiles:
    """Which render profiles live friends offer (a requester refuses jobs nobody can render)."""

    tag: ClassVar[str] = "known_profiles.v1"


@frozen(kw_only=True)
class Profiles:
    tag: ClassVar[str] = "profiles.v1"
    live: tuple[RenderProfile, ...]


# ---------------------------------------------------------- operator -> master


@frozen(kw_only=True)
class Grant:
    tag: ClassVar[str] = "grant.v1"
    user: str
    amount: int
    reason: str = "operator grant"


@frozen(kw_only=True)
class Trust:
    tag: ClassVar[str] = "trust.v1"
    key: str
    name: str


# ------------------------------------------------------------- anyone -> master


@frozen
class Status:
    tag: ClassVar[str] = "status.v1"


@frozen(kw_only=True)
class FriendStatus:
    tag: ClassVar[str] = "friend_status.v1"
    friend: str
    live: bool
    busy: bool
    job: int | None
    profile: RenderProfile
    clean_run: int


@frozen(kw_only=True)
class JobStatus:
    tag: ClassVar[str] = "job_status.v1"
    job: int
    submitter: str
    frames: int
    friends: tuple[str, ...]
    evicted: tuple[str, ...]
    escrow: int
    paid: int
    closed: bool


@frozen(kw_only=True)
class StatusReply:
    tag: ClassVar[str] = "status_reply.v1"
    friends: tuple[FriendStatus, ...]
    jobs: tuple[JobStatus, ...]
    balances: dict[str, int]
    granted: int


# ---------------------------------------------------------- client -> requester


@frozen(kw_only=True)
class Submit:
    """Render the uploaded .blend (already put as kind "upload" with this sha256)."""

    tag: ClassVar[str] = "submit.v1"
    user: str
    blend_sha256: str
    frames: tuple[int, ...] = ()  # empty: the file's own frame range
    friends: int = 4
    checks_per_friend: int = 1
    allow_outside: bool = False  # frames outside the file's range are refused unless this is set
    allow_missing: bool = False  # files the .blend uses that are not there are refused unless this is set
    tree: bool = False  # blend_sha256 names a job tree's manifest (see frender.apps.pack), not a .blend


@frozen(kw_only=True)
class HaveUploads:
    """Which of these files (by sha256) does the requester still need? Asked before uploading a job tree."""

    tag: ClassVar[str] = "have_uploads.v1"
    sha256s: tuple[str, ...]


@frozen(kw_only=True)
class UploadsWanted:
    tag: ClassVar[str] = "uploads_wanted.v1"
    missing: tuple[str, ...]  # those it does not hold: upload these


@frozen(kw_only=True)
class Submitted:
    tag: ClassVar[str] = "submitted.v1"
    job: int
    frames: tuple[int, ...]
    width: int
    height: int
    # How the file names its frames: the last part of its output path, and the
    # extension Blender adds ("" when the file turns extensions off).
    name: str = "frame_####"
    extension: str = ".png"
    output: str = "PNG 8-bit RGBA"  # the format frames come back in, for people


@frozen(kw_only=True)
class Progress:
    """How the job stands. With ``final_known`` >= 0 the reply is held until more than that many
    frames are final, the delivered count differs from ``delivered_known`` (when >= 0), or the job finishes."""

    tag: ClassVar[str] = "progress.v1"
    job: int
    final_known: int = -1
    delivered_known: int = -1


@frozen(kw_only=True)
class FriendLine:
    tag: ClassVar[str] = "friend_line.v1"
    friend: str
    delivered: int
    final: int
    checks: int
    evicted: bool


@frozen(kw_only=True)
class ProgressReply:
    tag: ClassVar[str] = "progress_reply.v1"
    job: int
    total: int
    delivered: int
    final: tuple[int, ...]  # frame numbers the client may fetch
    friends: tuple[FriendLine, ...]
    checks: int
    disagreements: int
    evictions: tuple[str, ...]
    finished: bool
    problem: str = ""  # set when the job cannot go on (e.g. no friends left)


# ---------------------------------------------------------- friend -> requester


@frozen(kw_only=True)
class WantWork:
    """A task, please; ``keeping`` names tasks still being rendered (asking ahead), every other one is given up."""

    tag: ClassVar[str] = "want_work.v1"
    assignment: SignedAssignment
    keeping: tuple[int, ...] = ()


@frozen(kw_only=True)
class Work:
    """Render these frames of the job's .blend; deliver each as it is saved."""

    tag: ClassVar[str] = "work.v1"
    job: int
    task: int
    frames: tuple[int, ...]
    deadline: float  # seconds from now
    width: int
    height: int


@frozen(kw_only=True)
class NoWork:
    """Nothing now: poll again after ``retry_after`` seconds, unless ``over``."""

    tag: ClassVar[str] = "no_work.v1"
    retry_after: float = 0.5
    over: bool = False
    why: str = ""


@frozen(kw_only=True)
class GiveBack:
    tag: ClassVar[str] = "give_back.v1"
    assignment: SignedAssignment
    task: int


@frozen(kw_only=True)
class FrameStored:
    tag: ClassVar[str] = "frame_stored.v1"
    frame: int
    ok: bool
    reason: str = ""


codec.register(
    Ok,
    RegisterFriend,
    Registered,
    Heartbeat,
    HeartbeatReply,
    AskFriends,
    GrantedFriendInfo,
    FriendsGranted,
    Report,
    KnownProfiles,
    Profiles,
    Grant,
    Trust,
    Status,
    FriendStatus,
    JobStatus,
    StatusReply,
    Submit,
    HaveUploads,
    UploadsWanted,
    Submitted,
    Progress,
    FriendLine,
    ProgressReply,
    WantWork,
    Work,
    NoWork,
    GiveBack,
    FrameStored,
)
