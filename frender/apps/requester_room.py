"""What a room of the requester (``submits``, ``frame_store``, ``reactions``, ``own_renders``) may use of the others.

Each room is a mixin of ``RequesterNode`` and subclasses ``Room``: this
protocol names the node's state and helpers that the rooms read, and the few
methods one room calls on another, so mypy checks every room on its own and
``RequesterNode`` against all of them. A room's own methods are not listed:
they are found on the room itself. Nothing here runs: every member is given
by ``RequesterNode`` or a room, which come first in its method order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps.master_link import MasterLink
from frender.apps.requester_events import JobAccepted, JobOpening, JobWants, ReportRefused
from frender.apps.uploads import Uploads
from frender.core import job as core
from frender.store import SqliteLog
from frender.transports import Address, Limits, Peer

if TYPE_CHECKING:
    from frender.apps.comparisons import ComparePool
    from frender.apps.frame_store import Turns
    from frender.apps.requester import Owed, RequesterSettings
    from frender.apps.tiles import Prerender

__all__ = ["Result", "Room"]

R = TypeVar("R")


class Result(Protocol):
    """A reaction's result: the core command it settles with, about one job (``Reactions._settle``)."""

    @property
    def job(self) -> int: ...


class Room(Protocol):
    """The ``RequesterNode`` as its rooms see it (see the module's docstring)."""

    # The node's state (requester.py).
    home: Path
    master: Address
    address: Address
    runtimes: blender.Runtimes
    settings: RequesterSettings
    limits: Limits
    clock: Callable[[], float]
    log: SqliteLog
    state: core.Requester
    jobs: dict[int, JobAccepted]
    keys: dict[int, dict[str, str]]
    copies: dict[tuple[int, str], Path]
    openings: dict[str, JobOpening]
    wants: dict[int, JobWants]
    master_problem: str
    short_why: dict[int, tuple[str, str]]
    refused: dict[int, ReportRefused]
    started: dict[int, float]
    recalls: dict[int, dict[int, tuple[int, bool]]]
    wake: trio.Event
    master_link: MasterLink
    uploads: Uploads
    comparisons: ComparePool
    _bodies: Turns
    _changed: trio.Event
    _draft: core.Requester
    _dropped: set[tuple[str, object]]
    _contact: dict[tuple[int, str], float]
    _asking: dict[tuple[int, str], int]
    _in_flight: set[object]
    _failures: dict[object, int]
    _own_render_lock: trio.CapacityLimiter
    _own_sessions: dict[int, list[blender.Session]]
    _own_pace: dict[bool, float]
    _opening_now: set[str]
    _prerendered: dict[int, set[tuple[int, int, int, int, int, int]]]
    _trees: dict[int, dict[str, str]]
    _verified: dict[tuple[Path, int, int, int], str]

    # The node's helpers (requester.py, node.py).
    @property
    def owed(self) -> Owed: ...

    def owed_now(self, *, prerenders: bool = True) -> Owed: ...

    async def apply(self, *commands_or_events: object) -> list[object]: ...

    def _now(self) -> float: ...

    @staticmethod
    def _entropy() -> str: ...

    def _backoff(self, failures: int) -> float: ...

    def _heard_from(self, job: int, friend: str) -> None: ...

    def _paced(self, whole: bool, seconds: float) -> None: ...

    def _own_job(self, peer: Peer, job: int) -> JobAccepted: ...

    def _over(self, job: int) -> str: ...

    # What one room calls on another.
    async def _ask_master(self, request: msg.Asks[R], *, retry: bool = True) -> R: ...  # reactions

    def _owes(self, kind: str, key: object) -> object | None: ...  # reactions

    async def _settle(self, kind: str, item: object, command: Result, *more: object) -> None: ...  # reactions

    async def _compare(self, event: core.OwedComparison) -> None: ...  # own_renders

    async def _own_render(self, event: core.OwedRender) -> None: ...  # own_renders

    def _job_dir(self, job: int) -> Path: ...  # frame_store

    def _own_path(self, job: int, check: int, *, whole: bool = False) -> Path: ...  # frame_store

    def _unit_output(self, job: int) -> blender.OutputFormat: ...  # frame_store

    def _extension(self, job: int) -> str: ...  # frame_store

    def _upload_path(self, sha256: str) -> Path: ...  # frame_store

    async def _checked(self, path: Path, sha256: str) -> Path: ...  # frame_store

    async def _account_of(self, peer: Peer) -> msg.AccountInfo: ...  # frame_store

    def _tree_files(self, job: int) -> dict[str, str]: ...  # submits

    async def _prerender(self, item: Prerender) -> None: ...  # own_renders

    async def close_own_session(self, job: int) -> None: ...  # own_renders

    def _prerender_path(self, job: int, unit: int, window: core.CropWindow) -> Path: ...  # tiles

    async def _stitched(self, job: int, frame: int) -> Path: ...  # tiles

    async def _denoise_stitched(self, job: int, stitched: Path, target: Path) -> None: ...  # own_renders

    def _stitched_path(self, job: int, frame: int) -> Path | None: ...  # tiles

    def _prerenders_owed(self) -> dict[tuple[int, int, int, int, int, int], Prerender]: ...  # tiles

    def _tree_file(self, job: int, sha256: str) -> Path: ...  # submits

