"""What only the requester's shell knows, logged beside the core's events (stable tags, never import paths).

The core knows frames and friends; these record the shell's side of a job: what
a job was accepted as, its friends' keys, its report to the master, the friends
asked for, and each opening logged before the master is asked.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
from attrs import frozen

from frender import blender, codec
from frender.core.job import CropWindow
from frender.core.profile import RenderProfile

__all__ = [
    "EvictionsReported",
    "JobAccepted",
    "JobOpening",
    "JobOpeningReleased",
    "FriendKeys",
    "ReportDelivered",
    "ReportRefused",
    "JobWants",
    "SHELL_EVENTS",
    "crop_boxes",
]



@frozen(kw_only=True)
class JobAccepted:
    tag: ClassVar[str] = "job_accepted.v1"
    job: int
    submitter: str
    submitter_key: str
    blend_sha256: str
    width: int
    height: int
    profile: RenderProfile
    fps: float = 24.0  # the .blend's frame rate, for the job's video
    # The file's own output format: frames are stored, checked and compared in it.
    file_format: str = "PNG"
    color_depth: str = "8"
    color_mode: str = "RGBA"
    # JPEG's quality, the file's own: a JPEG frame rendered in tiles is encoded once, at it. Logs from before: 90.
    quality: int = attrs.field(default=90, metadata={"omit_if_default": True})
    # A packed job tree: blend_sha256 names its manifest, this its main .blend ("" for a lone .blend).
    tree_main: str = ""
    # How a crop check's window is rendered: padded and aligned for a denoised file, as it is otherwise
    # (blender.crop_margins). Logs from before this choice padded every window: the defaults.
    crop_padding: int = attrs.field(default=blender.CROP_PADDING, metadata={"omit_if_default": True})
    crop_alignment: int = attrs.field(default=blender.CROP_ALIGNMENT, metadata={"omit_if_default": True})
    # What the requester measured at submit: windows of the first frame against the whole frame, in words
    # (blender.measure_crops); "" where nothing was measured. Crop checks ran only where they agreed.
    crop_measure: str = attrs.field(default="", metadata={"omit_if_default": True})
    # How the client names the frames (artist.frame_file), so `frender fetch J` names them as the submit did.
    # Logs from before this kept no name: "" reads as frame_#### with the format's extension.
    name: str = attrs.field(default="", metadata={"omit_if_default": True})
    extension: str | None = attrs.field(default=None, metadata={"omit_if_default": True})
    # The JobOpening this job settles; "" in logs from before openings were logged.
    opening: str = attrs.field(default="", metadata={"omit_if_default": True})
    # A denoised file in tiles: its tiles are rendered noisy with the denoising passes (``blender.NOISY_TILES``), and
    # each stitched frame is denoised once and written in ``output`` (``blender.denoise_frame``).
    denoise_after: bool = attrs.field(default=False, metadata={"omit_if_default": True})

    @property
    def output(self) -> blender.OutputFormat:
        """The file's own format: the frames the client gets."""
        return blender.OutputFormat(
            file_format=self.file_format, color_depth=self.color_depth, color_mode=self.color_mode, quality=self.quality
        )

    @property
    def unit_output(self) -> blender.OutputFormat:
        """The format of each work unit's copy: what friends deliver and checks compare."""
        return blender.NOISY_TILES if self.denoise_after else self.output


@frozen(kw_only=True)
class JobOpening:
    """About to ask the master to open a job: logged before asking, so a job the master opens is never lost.

    An opening that no ``JobAccepted`` (same ``opening``) follows in the log is
    released at the master (``ReleaseOpening``) and then ``JobOpeningReleased``:
    a crash, a lost reply or a failed lay-out between the grant and the
    acceptance leaves no points held for a job nobody runs.
    """

    tag: ClassVar[str] = "job_opening.v1"
    opening: str  # fresh, secret: the master files the job under it (AskFriends.opening)
    submitter: str
    submitter_key: str
    blend_sha256: str
    frames: int  # work units: a still's tiles (``tiles`` a frame)
    friends: int
    priority: int = 0
    tiles: int = attrs.field(default=0, metadata={"omit_if_default": True})  # tiles a frame; 0: whole frames


@frozen(kw_only=True)
class JobOpeningReleased:
    """An opening that never became a job here: the master closed what it opened for it (``job``), or opened nothing."""

    tag: ClassVar[str] = "job_opening_released.v1"
    opening: str
    job: int | None = None


@frozen(kw_only=True)
class FriendKeys:
    """The key each granted friend proves: only it may fetch the job's file and deliver frames."""

    tag: ClassVar[str] = "friend_keys.v1"
    job: int
    keys: dict[str, str]  # friend -> key fingerprint


@frozen(kw_only=True)
class ReportDelivered:
    tag: ClassVar[str] = "report_delivered.v1"
    job: int
    head_seq: int
    head_hash: str


@frozen(kw_only=True)
class EvictionsReported:
    """The master heard, while the job ran, that these friends were caught (or refused to hear of it for good)."""

    tag: ClassVar[str] = "evictions_reported.v1"
    job: int
    friends: tuple[str, ...]


@frozen(kw_only=True)
class ReportRefused:
    """The master refused the job's report for good (any reason but "closed"): logged once, never retried."""

    tag: ClassVar[str] = "report_refused.v1"
    job: int
    code: str
    reason: str


@frozen(kw_only=True)
class JobWants:
    """How many friends the client asked for, and the job's priority: a job granted fewer grows to this."""

    tag: ClassVar[str] = "job_wants.v1"
    job: int
    friends: int
    priority: int = 0


SHELL_EVENTS = (JobAccepted, FriendKeys, ReportDelivered, ReportRefused, JobWants, JobOpening, JobOpeningReleased, EvictionsReported)
codec.register(*SHELL_EVENTS)


def crop_boxes(window: CropWindow | None, accepted: JobAccepted) -> tuple[blender.Window, blender.Window] | None:
    """A crop check's secret window in pixels and the box rendered for it (padded and aligned for a denoised
    file); None: whole frames."""
    if window is None:
        return None
    width, height = accepted.width, accepted.height
    left, top, w, h = window.pixels(width, height)
    box = blender.Window(left=left, top=top, width=w, height=h)
    return box, box.padded(accepted.crop_padding, width, height, align=accepted.crop_alignment)
