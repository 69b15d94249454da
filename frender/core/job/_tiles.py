"""Tiles: a still split into work units, each rendered, checked and paid like a frame (Rule 20).

Invariants: a tiled job's work units are ``frame * count + tile``, so a unit
names its frame (``unit // count``) and its tile (``unit % count``), and the
units of one frame are consecutive; tile ``t`` is column ``t % cols`` and row
``t // cols`` counted from the top-left corner, its edges at ``i * width // cols``
and ``j * height // rows``, so the tiles of a frame cover it exactly, without
overlap. A frame in tiles is worth ``count`` points (one per work unit, as a
frame is in an untiled job), shared among its tiles by area (``tile_points``,
largest remainder): the shares are integers and add up to ``count`` exactly,
so the escrow of one point per work unit is never exceeded nor left over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

from frender.core.job._words import TaskKind

if TYPE_CHECKING:
    from frender.core.job._job import Job

__all__ = ["LONG_FRAME_SECONDS", "MAX_TILES", "TAIL_FRAMES_PER_FRIEND", "TileGrid", "auto_grid", "owner_counts", "spread", "whole_frame"]

MAX_TILES = 256  # tiles per frame at most (16 x 16): a crop check of a tile stays a meaningful window


@frozen(kw_only=True)
class TileGrid:
    """How each frame of a job is split: ``cols`` x ``rows`` tiles of a ``width`` x ``height`` frame."""

    cols: int
    rows: int
    width: int
    height: int

    @property
    def count(self) -> int:
        return self.cols * self.rows

    def problems(self) -> list[str]:
        if not (1 <= self.cols and 1 <= self.rows and self.count <= MAX_TILES):
            return [f"tiles are 1 to {MAX_TILES} per frame, not {self.cols}x{self.rows}"]
        if self.cols > self.width or self.rows > self.height:
            return [f"a {self.width}x{self.height} frame has no {self.cols}x{self.rows} tiles of a pixel or more"]
        return []

    def units(self, frames: tuple[int, ...]) -> tuple[int, ...]:
        """The work units of ``frames``: every tile of every frame, in frame order."""
        return tuple(frame * self.count + tile for frame in frames for tile in range(self.count))

    def unit(self, frame: int, tile: int) -> int:
        return frame * self.count + tile

    def frame_of(self, unit: int) -> int:
        return unit // self.count

    def tile_of(self, unit: int) -> int:
        return unit % self.count

    def box(self, tile: int) -> tuple[int, int, int, int]:
        """``(left, top, width, height)`` in pixels of tile ``tile``, from the frame's top-left corner."""
        col, row = tile % self.cols, tile // self.cols
        left, right = col * self.width // self.cols, (col + 1) * self.width // self.cols
        top, bottom = row * self.height // self.rows, (row + 1) * self.height // self.rows
        return left, top, right - left, bottom - top

    def points(self) -> tuple[int, ...]:
        """Each tile's share of a frame's ``count`` points by its area: floors first, then one more point to the
        largest remainders (ties to the lower tile). Integers that add up to ``count`` exactly."""
        total = self.width * self.height
        exact = [self.box(t)[2] * self.box(t)[3] * self.count for t in range(self.count)]  # shares x total
        shares = [e // total for e in exact]
        left = self.count - sum(shares)
        for t in sorted(range(self.count), key=lambda t: (-(exact[t] % total), t))[:left]:
            shares[t] += 1
        return tuple(shares)

    def unit_points(self, unit: int) -> int:
        return self.points()[self.tile_of(unit)]


# ``--tiles auto`` on an animation of long frames: a frame this long (seconds, the requester's own measured render)
# or longer, in a job of fewer than TAIL_FRAMES_PER_FRIEND frames a friend, has its tail shared out in TAIL_GRID
# tiles (whole frames first, ``JobSettings.whole_frames_first``): its last round would keep a few friends busy for
# a frame's time while the rest wait, and a tile's own costs (an ask, a put, a check: about a second) are small
# beside a quarter of such a frame.
LONG_FRAME_SECONDS = 120.0
TAIL_FRAMES_PER_FRIEND = 4
TAIL_GRID = (2, 2)


def auto_grid(
    frames: int, friends: int, width: int, height: int, frame_seconds: float = 0.0, long_frame: float = LONG_FRAME_SECONDS
) -> TileGrid | None:
    """``--tiles auto``: with fewer frames than friends, about two tiles per friend over the job's frames, in a grid
    whose tiles are about as wide as they are tall; with more, ``TAIL_GRID`` tiles for the tail of a short animation
    of long frames (``frame_seconds``, measured, at least ``long_frame``); otherwise none."""
    if frames < 1:
        return None
    if frames >= friends:
        if not 0 < long_frame <= frame_seconds or frames >= TAIL_FRAMES_PER_FRIEND * friends:
            return None
        cols, rows = TAIL_GRID
        return TileGrid(cols=min(cols, width), rows=min(rows, height), width=width, height=height)
    want = min(MAX_TILES, -(-2 * friends // frames))
    rows = max(1, min(16, round((want * height / width) ** 0.5)))
    cols = max(1, min(16, -(-want // rows)))
    return TileGrid(cols=min(cols, width), rows=min(rows, height), width=width, height=height)


def owner_counts(j: Job, owner: str) -> dict[int, int]:
    """Frame -> the tiles of it that friends of ``owner`` render, delivered, or rendered final."""
    grid = j.settings.tiles
    assert grid is not None
    mine = {f for f, rec in j.friends.items() if rec.owner == owner}
    counts: dict[int, int] = {}

    def count(unit: int) -> None:
        frame = grid.frame_of(unit)
        counts[frame] = counts.get(frame, 0) + 1

    for friend in mine:
        for number in j.tasks.live_of.get(friend, ()):
            task = j.tasks.by_number[number]
            if task.kind != TaskKind.CHECK:
                for unit in j.tasks.live[number]:
                    count(unit)
    for unit, copy in j.frames.copy.items():
        if copy.friend in mine:
            count(unit)
    for unit, final in j.frames.final.items():
        if final.friend in mine:
            count(unit)
    return counts


def whole_frame(j: Job, friend: str, units: list[int], active: int, *, size: int, held: int) -> list[int]:
    """Rule 20, ``whole_frames_first``: every tile of the first frame in ``units`` (the queue, in the order it offers)
    whose tiles are all queued and none lost by ``friend``, while the friend's units in hand and a whole frame's stay
    within half a fair share of the queue (guided self-scheduling, as ``_tasks.chunk_size``, counting what a friend
    asking ahead holds already: ``held``) and it has room for ``size`` units; [] otherwise (the tail: single tiles)."""
    grid = j.settings.tiles
    if grid is None or not j.settings.whole_frames_first or size < grid.count:
        return []
    if held + grid.count > -(-len(units) // (2 * max(active, 1))):
        return []
    queued = set(units)
    tried = j.tasks.tried
    for unit in units:
        frame = grid.frame_of(unit)
        tiles = grid.units((frame,))
        if all(u in queued and friend not in tried.get(u, ()) for u in tiles):
            return list(tiles)
    return []


def spread(j: Job, friend: str, units: list[int]) -> list[int]:
    """Rule 20: ``units`` (in the order the queue offers them) with the tiles of frames the friend's owner has the
    fewest tiles of first, so the tiles of one frame go to friends of different owners wherever the job allows."""
    if j.settings.tiles is None or len(units) < 2:
        return units
    grid = j.settings.tiles
    counts = owner_counts(j, j.friends[friend].owner)
    return sorted(units, key=lambda u: counts.get(grid.frame_of(u), 0))  # stable: the queue's order breaks ties
