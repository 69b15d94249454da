"""What clients and friends say to the requester (``messages`` re-exports every name; docs/protocol.md lists them)."""

from __future__ import annotations

from typing import ClassVar

import attrs
from attrs import frozen

from frender import codec
from frender.apps.asks import Asks, Ok  # noqa: F401 (Ok: the reply GiveBack names)
from frender.transports import SignedAssignment

__all__ = [
    "Submit",
    "HaveUploads",
    "UploadsWanted",
    "Submitted",
    "DashboardLink",
    "DashboardLinkReply",
    "Progress",
    "FriendLine",
    "Recall",
    "ProgressReply",
    "WantWork",
    "Work",
    "CropBox",
    "NoWork",
    "GiveBack",
    "FrameStored",
    "Cancel",
    "Cancelled",
    "Jobs",
    "JobLine",
    "JobsReply",
]


# ---------------------------------------------------------- client -> requester


@frozen(kw_only=True)
class Submit(Asks["Submitted"]):
    """Render the uploaded .blend (already put as kind "upload" with this sha256)."""

    tag: ClassVar[str] = "submit.v1"
    user: str
    blend_sha256: str
    frames: tuple[int, ...] = ()  # empty: the file's own frame range
    friends: int = 4
    checks_per_friend: int = 1
    priority: int = 0  # higher first, when jobs wait for friends to free up
    allow_outside: bool = False  # frames outside the file's range are refused unless this is set
    allow_missing: bool = False  # files the .blend uses that are not there are refused unless this is set
    tree: bool = False  # blend_sha256 names a job tree's manifest (see frender.apps.pack), not a .blend
    blender: str = ""  # the Blender to render with ("4.2", "5.0.1"); empty: the series that saved the file
    tiles: str = ""  # "COLSxROWS" or "auto": each frame rendered in tiles by many friends, then stitched; "": whole frames


@frozen(kw_only=True)
class HaveUploads(Asks["UploadsWanted"]):
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
    fps: float = 0.0  # the .blend's frame rate (0: not known), for the video
    # How the file names its frames: the last part of its output path, and the
    # extension Blender adds ("" when the file turns extensions off).
    name: str = "frame_####"
    extension: str = ".png"
    output: str = "PNG 8-bit RGBA"  # the format frames come back in, for people
    tiles: str = ""  # "4x4": each frame is rendered in these tiles and stitched; "": whole frames
    untiled: str = ""  # tiles were asked for, and why the file is rendered in whole frames instead
    denoised_after: str = attrs.field(default="", metadata={"omit_if_default": True})  # a denoised file in tiles: how, for people


@frozen(kw_only=True)
class DashboardLink(Asks["DashboardLinkReply"]):
    """The web page of one of my jobs, as a link carrying a signed, expiring token."""

    tag: ClassVar[str] = "dashboard_link.v1"
    job: int


@frozen(kw_only=True)
class DashboardLinkReply:
    tag: ClassVar[str] = "dashboard_link_reply.v1"
    url: str  # "" when the requester serves no dashboard


@frozen(kw_only=True)
class Progress(Asks["ProgressReply"]):
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
    gone: bool = False  # it left the job (stopped asking, or its tasks timed out): its frames went to others


@frozen(kw_only=True)
class Recall:
    """A frame withdrawn after it was final: a friend it rested on was caught forging (unravelling). A client that
    wrote it before the latest recall replaces its file: deleted now, the re-verified copy once ``final`` again."""

    tag: ClassVar[str] = "recall.v1"
    frame: int
    times: int  # how often it was withdrawn so far: a copy fetched before the latest withdrawal is void
    rendered: bool  # the caught friend rendered it (it is rendered again); False: it vouched for it (it is checked again)
    final: bool  # final again: fetch it anew


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
    cancelled: bool = False  # finished because its submitter cancelled it: ``final`` is all there will be
    wanted: int = 0  # friends the job asked for (0: not known)
    active: int = 0  # friends rendering for it now; fewer than ``wanted``: it grows as friends free up
    own_renders: int = 0  # the requester's own renders so far: checks no friend could take, arbitrations, spot checks
    spot_checks: int = 0  # of those, spot checks over agreed crop checks
    failed: str = ""  # finished because its file cannot render: the error its friends agreed on
    eta: float = -1.0  # seconds left at the pace so far (frender.apps.words.time_left); -1: not known yet
    waiting: str = ""  # with no friend rendering: the master's cause in a word (frender.apps.words.WAITING_CAUSES)
    waiting_detail: str = ""  # the master's own words for it
    recalled: tuple[Recall, ...] = ()  # every frame withdrawn after it was final, in frame order (final again or not)
    failed_cause: str = ""  # with ``failed``: "render" (the file cannot render) or "starved" (no friend could go on with it)
    tiles: int = 0  # tiles per frame of a job in tiles (0: whole frames); ``final`` then lists frames whole and stitched
    tiles_final: int = 0  # tiles final so far, of ``total`` x ``tiles``
    tiles_delivered: int = 0
    tile_cols: int = 0  # the tiles' columns: the dashboard lays a frame's tiles out as the still they make


# ---------------------------------------------------------- friend -> requester


@frozen(kw_only=True)
class WantWork(Asks["Work | NoWork"]):
    """A task, please; ``keeping`` names tasks still being rendered (asking ahead), ``sending`` tasks rendered
    whole whose frames are still being sent; every other one is given up."""

    tag: ClassVar[str] = "want_work.v1"
    assignment: SignedAssignment
    keeping: tuple[int, ...] = ()
    sending: tuple[int, ...] = ()


@frozen(kw_only=True)
class CropBox:
    """A box of a frame in pixels from its top-left corner: what a crop check renders."""

    tag: ClassVar[str] = "crop_box.v1"
    left: int
    top: int
    width: int
    height: int
    in_place: bool = False  # a tile of an 8-bit frame: render the box in place (a frame-sized image), not cropped
    lossless: bool = False  # a tile of a JPEG frame: write it as 8-bit PNG (the frame's JPEG is encoded once, stitched)


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
    window: CropBox | None = None  # a crop check: render only this box of the frame (pixels, padded and aligned)
    deliver_as: tuple[int, ...] = ()  # a tile: each frame's render is delivered under this number (its work unit)
    # A denoised file's tile: rendered noisy with the denoising passes (blender.NOISY_TILES); left out while False,
    # so every other job's Work is the bytes it was.
    noisy: bool = attrs.field(default=False, metadata={"omit_if_default": True})
    # A whole frame of a job in tiles (its tail is shared out in tiles): each tile's box, rendered one after another
    # and delivered under the deliver_as number at its place; ``window`` is then None. Left out when empty.
    tiles: tuple[CropBox, ...] = attrs.field(default=(), metadata={"omit_if_default": True})


@frozen(kw_only=True)
class NoWork:
    """Nothing now: poll again after ``retry_after`` seconds, unless ``over``."""

    tag: ClassVar[str] = "no_work.v1"
    retry_after: float = 0.5
    over: bool = False
    why: str = ""


@frozen(kw_only=True)
class GiveBack(Asks["Ok"]):
    tag: ClassVar[str] = "give_back.v1"
    assignment: SignedAssignment
    task: int
    error: str = ""  # the friend's Blender could not render the task's file, and said this (its first line)


@frozen(kw_only=True)
class FrameStored:
    tag: ClassVar[str] = "frame_stored.v1"
    frame: int
    ok: bool
    reason: str = ""


# ---------------------------------------------------------- client -> requester: my jobs


@frozen(kw_only=True)
class Cancel(Asks["Cancelled"]):
    """Stop my job: its friends are released, final frames kept, the unearned escrow refunded."""

    tag: ClassVar[str] = "cancel.v1"
    job: int


@frozen(kw_only=True)
class Cancelled:
    tag: ClassVar[str] = "cancelled.v1"
    job: int
    final: int  # frames final and kept (fetch them with ``submit`` again)
    total: int
    escrowed: int  # points the job escrowed
    spent: int  # paid to friends: final frames + agreeing checks; the rest goes back to the submitter


@frozen(kw_only=True)
class Jobs(Asks["JobsReply"]):
    """The jobs this key submitted here."""

    tag: ClassVar[str] = "jobs.v1"


@frozen(kw_only=True)
class JobLine:
    tag: ClassVar[str] = "job_line.v1"
    job: int
    state: str  # "running", "waiting" (running with no friend yet, or none left), "finished", "cancelled", "failed"
    final: int
    total: int
    active: int  # friends rendering now
    wanted: int  # friends asked for
    eta: float  # seconds left, from the pace of final frames so far; -1: not known yet
    escrowed: int
    spent: int  # earned by friends so far (paid when the job closes)
    priority: int = 0
    name: str = "frame_####"  # how its frames are named (as in Submitted), for `frender fetch`
    extension: str = ".png"
    fps: float = 0.0
    failed: str = ""  # a failed job: why its file cannot render, or why no friend could go on with it
    failed_cause: str = ""  # as in ProgressReply
    waiting: str = ""  # as in ProgressReply
    file: str = ""  # the main .blend's name in the job tree ("" for jobs of a lone .blend)
    frames: str = ""  # the frames asked for, as ranges: "1-48", "1-24x2", "1,5,10-20"


@frozen(kw_only=True)
class JobsReply:
    tag: ClassVar[str] = "jobs_reply.v1"
    jobs: tuple[JobLine, ...]


codec.register(Cancel, Cancelled, Jobs, JobLine, JobsReply)


codec.register(
    Submit,
    HaveUploads,
    UploadsWanted,
    Submitted,
    DashboardLink,
    DashboardLinkReply,
    Progress,
    FriendLine,
    Recall,
    ProgressReply,
    WantWork,
    Work,
    CropBox,
    NoWork,
    GiveBack,
    FrameStored,
)
