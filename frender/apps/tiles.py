"""Stills in tiles, the requester's side: what a work unit renders, what its image holds, and frames stitched.

A tiled job's core counts work units (``frame * count + tile``, the core's Rule
18); everything the shell does with a unit goes through ``unit_view``:

- a render task of a tile renders that tile's box of its frame (Blender's render
  border, cropped), and the friend delivers it named by the unit;
- a crop check of a tile renders its secret window placed inside the tile (the
  core's grid units are the tile's), and compares it with the same pixels of
  the tile; full checks of formats compared whole (16-bit, EXR) render the tile;
- a frame is whole once every tile is final; it is stitched into the artist's
  own format (``frender.blender.stitch``) when first asked for, from the final
  copies (each checked against its logged hash), and named by those copies'
  hashes, so a recalled tile gives a fresh stitch.

Files that cannot be tiled are refused at submit (``untileable``): a compositor
that reads beyond a pixel. A file with the denoiser on is
tiled noisy (``JobAccepted.denoise_after``): a tile denoised alone differs from
the frame at its edges, so friends render its tiles with the denoiser off and
its denoising passes as half-float multilayer EXR (``blender.NOISY_TILES``), checks
compare those exact tiles, and the stitched frame is denoised once by the
requester's own Blender into the file's own format (``blender.denoise_frame``);
unless its compositor changes the render or its frames are multilayer EXR
(``denoised_untileable``).

A JPEG frame's tiles are rendered lossless (``unit_output``: 8-bit PNG, in place,
the frame's own 8-bit pixels), and its JPEG is encoded once, by the requester's
Blender at the file's quality, from the stitched pixels (``frender.blender.stitch_jpeg``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import trio
from attrs import frozen

from frender import blender
from frender.apps import messages as msg
from frender.apps.requester_events import JobAccepted, crop_boxes
from frender.apps.requester_room import Room
from frender.core import job as core
from frender.transports import Refused

__all__ = [
    "Prerender", "TiledFrames", "UnitView", "denoised_untileable", "in_place", "parse_tiles", "untileable", "unit_output", "unit_view",
    "whole_frames", "stitched_name", "tile_boxes",
]


# Engines whose window of a frame is the frame's pixels: Cycles without the denoiser (measured: docs/verification.md);
# the modelled renderer of benchmarks and tests by construction. EEVEE is not (a window differs in 73% of its pixels).
TILEABLE_ENGINES = frozenset({"CYCLES", "MODELLED"})
# The formats a denoised file's frame is written in after the stitch (by Blender: JPEG too, encoded once).
DENOISED_FORMATS = frozenset({"PNG", "TIFF", "OPEN_EXR", "JPEG"})


@frozen(kw_only=True)
class UnitView:
    """One work unit as the shell sees it."""

    frame: int  # the frame Blender renders
    width: int  # the unit's image: the frame's size (whole frames, and tiles of 8-bit frames, rendered in place), or its tile's
    height: int
    crop: tuple[blender.Window, blender.Window] | None  # a crop check's box and rendered box, in the unit image's pixels
    render: blender.Window | None  # what Blender renders, in the frame's pixels; None: the whole frame
    min_fraction: float = blender.MIN_WINDOW_FRACTION  # of the unit image a crop box covers at least

    @property
    def rendered_size(self) -> tuple[int, int]:
        """The size of the image a friend delivers for this unit's task."""
        return (self.crop[1].width, self.crop[1].height) if self.crop is not None else (self.width, self.height)


def in_place(accepted: JobAccepted) -> bool:
    """Tiles of 8-bit frames are rendered in place (``blender.Window.in_place``): a cropped render's dither
    differs from the frame's by up to 2/255, a frame-sized render's is the frame's own, so the stitch is exact."""
    return accepted.unit_output.precision == "8bit"


# Formats whose tiles are rendered lossless and whose frame is encoded once from the stitched pixels.
ENCODED_ONCE = frozenset({"JPEG"})


def unit_output(accepted: JobAccepted, tiled: bool) -> blender.OutputFormat:
    """The format a work unit's image comes in: the job's own, a denoised still's noisy tiles (``JobAccepted.unit_output``),
    or for a tile of a JPEG frame 8-bit PNG in its colour mode."""
    if tiled and not accepted.denoise_after and accepted.file_format in ENCODED_ONCE:
        return blender.OutputFormat(file_format="PNG", color_depth="8", color_mode=accepted.color_mode)
    return accepted.unit_output


def unit_view(grid: core.TileGrid | None, accepted: JobAccepted, unit: int, window: core.CropWindow | None) -> UnitView:
    """What unit ``unit`` of a job renders and holds, for a render (``window`` None) or a crop check's window."""
    view = _unit_view(grid, accepted, unit, window)
    if grid is not None and view.render is not None and not accepted.denoise_after and accepted.file_format in ENCODED_ONCE:
        return attrs.evolve(view, render=attrs.evolve(view.render, lossless=True))
    return view


def _unit_view(grid: core.TileGrid | None, accepted: JobAccepted, unit: int, window: core.CropWindow | None) -> UnitView:
    if grid is None:
        crop = crop_boxes(window, accepted)
        return UnitView(frame=unit, width=accepted.width, height=accepted.height, crop=crop, render=None if crop is None else crop[1])
    left, top, width, height = grid.box(grid.tile_of(unit))
    placed = in_place(accepted)
    frame = grid.frame_of(unit)
    if window is None:
        tile = blender.Window(left=left, top=top, width=width, height=height, in_place=placed)
        size = (accepted.width, accepted.height) if placed else (width, height)
        return UnitView(frame=frame, width=size[0], height=size[1], crop=None, render=tile)
    x, y, w, h = window.pixels(width, height)  # the core's grid units are the tile's
    if placed:  # the subject's image is the whole frame: the box in the frame's pixels (a cropped crop: dither aside)
        box = blender.Window(left=left + x, top=top + y, width=w, height=h)
        rendered = box.padded(accepted.crop_padding, accepted.width, accepted.height, align=accepted.crop_alignment)
        fraction = blender.MIN_WINDOW_FRACTION * width * height / (accepted.width * accepted.height) * 0.999
        return UnitView(frame=frame, width=accepted.width, height=accepted.height, crop=(box, rendered), render=rendered, min_fraction=fraction)
    box = blender.Window(left=x, top=y, width=w, height=h)
    rendered = box.padded(accepted.crop_padding, width, height, align=accepted.crop_alignment)
    render = blender.Window(left=left + rendered.left, top=top + rendered.top, width=rendered.width, height=rendered.height)
    return UnitView(frame=frame, width=width, height=height, crop=(box, rendered), render=render)


def tile_boxes(grid: core.TileGrid) -> list[blender.Window]:
    return [blender.Window(left=b[0], top=b[1], width=b[2], height=b[3]) for b in map(grid.box, range(grid.count))]


def parse_tiles(text: str) -> tuple[int, int] | str:
    """``--tiles``: "" (whole frames), "auto", or COLSxROWS such as "4x4" -> (cols, rows); a bad value raises ValueError."""
    text = text.strip().lower()
    if text in ("", "auto"):
        return text
    cols, sep, rows = text.partition("x")
    if not sep or not cols.isdigit() or not rows.isdigit():
        raise ValueError(f"--tiles {text!r}: give COLSxROWS (e.g. 4x4) or auto")
    grid = int(cols), int(rows)
    if not (1 <= grid[0] and 1 <= grid[1] and grid[0] * grid[1] <= core.MAX_TILES):
        raise ValueError(f"--tiles {text!r}: 1 to {core.MAX_TILES} tiles per frame")
    return grid


def untileable(info: blender.BlendInfo, output: blender.OutputFormat) -> str:
    """Why frames of this file cannot be rendered in tiles and stitched exactly ("" when they can)."""
    if info.crop_unsafe:
        return f"its compositor or sequencer reads beyond a pixel ({', '.join(info.crop_unsafe)}), so a tile differs from the same part of the frame"
    if info.denoiser is not None:
        return denoised_untileable(info, output)
    if info.engine not in TILEABLE_ENGINES:
        return f"{info.engine} is not Cycles: only Cycles renders a window with exactly the frame's pixels"
    if output.file_format in ENCODED_ONCE:  # its tiles are lossless; the frame is encoded once
        return ""
    return blender.stitchable(output)


def denoised_untileable(info: blender.BlendInfo, output: blender.OutputFormat) -> str:
    """Why a file with the denoiser on cannot be tiled ("" when it can): its tiles are rendered noisy and the stitched
    frame is denoised once (``blender.denoise_frame``), where no compositor runs and only the image is written."""
    if info.composited:
        return (
            f"the denoiser ({info.denoiser}) is on and the compositor changes the render ({', '.join(info.composited)}): "
            "a frame is denoised after its tiles are stitched, where no compositor runs"
        )
    if output.file_format == "OPEN_EXR_MULTILAYER":
        return (
            f"the denoiser ({info.denoiser}) is on and frames are multilayer OpenEXR: "
            "a frame denoised after its tiles are stitched holds the denoiser's passes, not the file's"
        )
    if output.file_format not in DENOISED_FORMATS:
        return f"{output.describe()} frames are not written after the denoiser"
    return ""


def whole_frames(state: core.Requester, job: int, grid: core.TileGrid) -> tuple[tuple[int, ...], int]:
    """(frames every tile of which is final, tiles final) of a tiled job."""
    final = core.summary(state, job).final
    count: dict[int, int] = {}
    for unit in final:
        frame = grid.frame_of(unit)
        count[frame] = count.get(frame, 0) + 1
    return tuple(sorted(f for f, n in count.items() if n == grid.count)), len(final)


def stitched_name(frame: int, shas: list[str], extension: str) -> str:
    """The stitched frame's file: named by its frame and its tiles' hashes (a recalled tile gives another name)."""
    return f"{frame}-{hashlib.sha256(''.join(shas).encode()).hexdigest()[:16]}{extension}"


def stitch_frame(tiles: list[tuple[blender.Window, Path]], accepted: JobAccepted, out: Path) -> Path:
    """Stitch the final tiles of a frame into ``out`` (in a thread: it decodes and encodes the frame)."""
    return blender.stitch(tiles, accepted.unit_output, width=accepted.width, height=accepted.height, out=out)


@frozen(kw_only=True)
class Prerender:
    """A window of a tile the requester renders ahead of its check's arbitration (see ``TiledFrames._prerenders_owed``)."""

    job: int
    frame: int  # the tile's work unit
    window: core.CropWindow

    @property
    def key(self) -> tuple[int, int, int, int, int, int]:
        return (self.job, self.frame, self.window.x, self.window.y, self.window.w, self.window.h)


_EARLY = frozenset({core.CheckState.PENDING, core.CheckState.ASSIGNED, core.CheckState.COMPARING})  # OWN: rendered as owed at once


class TiledFrames(Room):
    """A tiled job's frames as its client sees them: whole once every tile is final, stitched when first asked for
    (a part of ``RequesterNode``)."""

    def _grid(self, job: int) -> core.TileGrid:
        """The tiles of ``job``, which the caller knows to be a job in tiles."""
        grid = core.tile_grid(self.state, job)
        if grid is None:
            raise ValueError(f"job {job} renders whole frames, not tiles")
        return grid

    def _stitch_target(self, job: int, frame: int) -> tuple[Path, list[str]] | None:
        """Where ``frame``'s stitch of its final tiles goes, and their hashes; None while a tile of it is not final."""
        grid = self._grid(job)
        finals = [core.final_copy(self.state, job, grid.unit(frame, t)) for t in range(grid.count)]
        shas = [f.sha256 for f in finals if f is not None]
        if len(shas) < len(finals):
            return None
        return self._job_dir(job) / "stitched" / stitched_name(frame, shas, self.jobs[job].output.extension), shas

    def _stitched_path(self, job: int, frame: int) -> Path | None:
        """``frame``'s stitch if it was made (the dashboard's thumbnails wait for the client's first fetch)."""
        found = self._stitch_target(job, frame)
        return found[0] if found is not None and found[0].exists() else None

    async def _stitched(self, job: int, frame: int) -> Path:
        """The stitched file of ``frame``; refused while a tile of it is not final."""
        grid = self._grid(job)
        accepted = self.jobs[job]
        found = self._stitch_target(job, frame)
        if found is None:
            raise Refused("not-final", f"frame {frame} of job {job} is not final yet: some of its tiles are not")
        target, shas = found
        if not target.exists():
            # Each tile is, byte for byte, the copy the log accepted; the stitch only places their pixels.
            paths = [await self._checked(self.copies[(job, sha)], sha) for sha in shas]
            target.parent.mkdir(exist_ok=True)
            boxes = tile_boxes(grid)
            if accepted.denoise_after:  # noisy tiles: stitched beside the frame, then denoised once into it
                noisy = target.with_name(f".noisy-{self._entropy()[:16]}-{target.stem}.exr")  # one of its own per ask
                try:
                    await trio.to_thread.run_sync(lambda: stitch_frame(list(zip(boxes, paths)), accepted, noisy))
                    await self._denoise_stitched(job, noisy, target)
                finally:
                    noisy.unlink(missing_ok=True)
                return target
            if accepted.file_format in ENCODED_ONCE:  # lossless tiles, encoded once by our Blender, the job's own
                backend = await self.runtimes.for_version(accepted.profile.blender_version)
                await blender.stitch_jpeg(
                    backend, list(zip(boxes, paths)), accepted.output, width=accepted.width, height=accepted.height, out=target,
                    limits=self.settings.render_limits,
                )
            else:
                await trio.to_thread.run_sync(lambda: stitch_frame(list(zip(boxes, paths)), accepted, target))
        return target

    def _prerender_path(self, job: int, unit: int, window: core.CropWindow) -> Path:
        """Where the requester's render of ``window`` of tile ``unit`` is kept once rendered ahead."""
        return self._job_dir(job) / "own" / f"pre-{unit}-{window.x}.{window.y}.{window.w}.{window.h}{self._extension(job)}"

    def _prerenders_owed(self) -> dict[tuple[int, int, int, int, int, int], Prerender]:
        """The windows of tiles the requester renders ahead: those drawn ahead as soon as their tiles are handed out,
        the others as soon as their checks are drawn.

        Early in a job the requester renders each tile's window itself (a spot, Rules 11 and 14), or arbitrates a
        peer's check of it, and that render was asked for only after the tile arrived, so the two ran one after the
        other: the still waited for a window's render after its last tile. A window the requester renders alone is
        drawn ahead (``core.windows_ahead``), so it is rendered beside the friend's tile; another is rendered once its
        check is drawn, beside the peer. The owed render finds it done (``_own_render``). A still's checks are few (one
        small window a tile), so rendering one that is never asked for costs little.
        """
        out: dict[tuple[int, int, int, int, int, int], Prerender] = {}
        running = core.running_jobs(self.state)
        for ended in self._prerendered.keys() - set(running):  # a job ended: its windows are forgotten
            del self._prerendered[ended]
        for job in running:
            if job not in self.jobs or core.tile_grid(self.state, job) is None:
                continue
            wanted = [Prerender(job=job, frame=unit, window=window) for unit, window in core.windows_ahead(self.state, job).items()]
            wanted += [Prerender(job=job, frame=c.frame, window=c.window) for c in core.checks_in(self.state, job, _EARLY) if c.window is not None]
            for item in wanted:  # what was rendered ahead is remembered: a job of many tiles asks this on every commit
                if item.key in out or item.key in self._prerendered.get(job, ()):
                    continue
                if self._prerender_path(job, item.frame, item.window).exists():
                    self._prerendered.setdefault(job, set()).add(item.key)
                else:
                    out[item.key] = item
        return out

    def _whole_frames(self, job: int) -> tuple[int, tuple[int, ...]]:
        """(frames whole, the job's frames) of a tiled job."""
        grid = self._grid(job)
        frames = tuple(sorted({grid.frame_of(u) for u in core.frame_numbers(self.state, job)}))
        return len(whole_frames(self.state, job, grid)[0]), frames

    def _tiled_counts(self, job: int) -> tuple[int, int]:
        """(delivered, final) as a tiled job's progress reply counts them: tiles delivered, frames whole."""
        delivered, _ = core.delivered_and_final(self.state, job)
        grid = self._grid(job)
        return delivered, len(whole_frames(self.state, job, grid)[0])

    def _tiled_progress(self, job: int, reply: msg.ProgressReply) -> msg.ProgressReply:
        """A progress reply of a tiled job: ``final`` lists whole frames of ``total`` frames; tiles counted beside."""
        grid = core.tile_grid(self.state, job)
        if grid is None:
            return reply
        frames, tiles_final = whole_frames(self.state, job, grid)
        return attrs.evolve(
            reply, final=frames, total=reply.total // grid.count, tiles=grid.count, tiles_final=tiles_final, tiles_delivered=reply.delivered,
            tile_cols=grid.cols,
        )
