"""What a dashboard may read of a node: the views the nodes satisfy, so frender.apps.web depends on no node class.

The requester and the master each offer these methods over their committed
state (``RequesterNode``, ``MasterNode``); the pages read nothing else and write
nothing to a node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from attrs import frozen

from frender.apps.messages import ProgressReply, StatusReply
from frender.core.job import Evidence

__all__ = ["FRAME_MEDIA_TYPES", "JobFacts", "MasterView", "RequesterView", "media_type_of"]

# A final frame is served in its own format: the media type by the job's extension.
FRAME_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff", ".tiff": "image/tiff", ".exr": "image/x-exr"}


def media_type_of(extension: str) -> str:
    """The media type a frame with ``extension`` is served as (unknown ones as plain bytes)."""
    return FRAME_MEDIA_TYPES.get(extension.lower(), "application/octet-stream")


@frozen(kw_only=True)
class JobFacts:
    """What a job page says of a job besides its progress."""

    submitter: str
    blender: str  # the Blender and device the job renders with
    fps: float
    extension: str  # of its frames, as Blender writes them (".png", ".exr", ...)


class RequesterView(Protocol):
    """A requester as its dashboard sees it."""

    @property
    def key(self) -> str:
        """The requester's key fingerprint: a job's link is signed with it."""

    @property
    def master_key(self) -> str:
        """The master's key fingerprint: the operator's tokens are signed with it."""

    def job_numbers(self) -> list[int]: ...

    def job_facts(self, job: int) -> JobFacts: ...

    def progress_of(self, job: int) -> ProgressReply: ...

    def points_of(self, job: int) -> tuple[int, int]: ...

    def evictions_of(self, job: int) -> dict[str, Evidence]: ...

    def frame_states_of(self, job: int) -> dict[int, str]: ...

    def final_path(self, job: int, frame: int) -> Path | None: ...

    def job_dir(self, job: int) -> Path: ...

    async def changed(self) -> None: ...

    def dashboard_at(self, url: str) -> None:
        """Where this dashboard serves: the node's job links (``DashboardLink``) point there from now on."""


class MasterView(Protocol):
    """A master as its operator's dashboard sees it."""

    @property
    def operators(self) -> frozenset[str]: ...

    def status(self) -> StatusReply: ...
