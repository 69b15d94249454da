"""Whether a window of a file equals the same pixels of its frame: measured per file, never assumed per engine.

A crop check compares a window rendered alone (Blender's render border, cropped
to it) with the same pixels of a delivered frame. That holds exactly for Cycles
without the denoiser, but not for every file: EEVEE's screen-space effects
(reflections, ambient occlusion, bloom) and a compositor's glow see only what the
border renders, so on Blender's own UDIM test scene a window differed from the
frame in 71-73% of its pixels, while a simple EEVEE scene differs in 0.1%. The
engine does not say which; the file does. So the requester renders the job's
first frame whole and a few windows of it with its own Blender, once, and checks
the job over whole frames where any window disagrees (docs/verification.md).

Rules:

1. The windows are those a crop check draws (a quarter of the frame each way,
   1/16 of its area), at the frame's top-left and bottom-right corners, where
   effects lose most of what lies outside the border, and in its centre.
2. Each window is rendered as a check renders it (padded and aligned for a
   denoised file, ``crop_region``) and compared in its centre under the
   comparison's own tolerance (``compare_window``); the worst decides.
3. One render session: the file is loaded and guarded once, then the frame and
   the windows render in it (about 1.3 frames' work).
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio
from attrs import frozen

from ._backend import Backend
from ._compare import Comparison
from ._runner import Limits
from ._window import Window, compare_window, crop_margins, crop_region

__all__ = ["CropMeasure", "measure_crops", "measure_windows"]


@frozen(kw_only=True)
class CropMeasure:
    """Windows of ``frame`` against the same pixels of the whole frame, as the requester's Blender rendered them."""

    frame: int
    windows: tuple[Window, ...]
    comparisons: tuple[Comparison, ...]
    frame_seconds: float = 0.0  # the whole frame's render, in a session already open: what a friend's frame may take
    window_seconds: float = 0.0  # a window's render (the mean of them), in the same session: what an own check takes

    @property
    def equal(self) -> bool:
        """Every window agrees with its frame under the comparison's tolerance: crop checks are sound for this file."""
        return all(c.verdict != "disagree" for c in self.comparisons)

    @property
    def worst(self) -> Comparison:
        return max(self.comparisons, key=lambda c: (c.verdict == "disagree", c.fraction_off, c.max_diff))


def measure_windows(width: int, height: int) -> tuple[Window, ...]:
    """Rule 1: windows of a quarter of the frame each way at the top-left corner, the centre and the bottom-right corner."""
    w, h = -(-width // 4), -(-height // 4)
    spots = ((0, 0), ((width - w) // 2, (height - h) // 2), (width - w, height - h))
    return tuple(dict.fromkeys(Window(left=x, top=y, width=w, height=h) for x, y in spots))


async def measure_crops(
    backend: Backend,
    blend: Path,
    work: Path,
    frame: int,
    *,
    width: int,
    height: int,
    denoised: bool,
    limits: Limits = Limits(),
    threads: int | None = None,
    windows: tuple[Window, ...] | None = None,
) -> CropMeasure:
    """Render ``frame`` of ``blend`` whole and each window of it in one session under ``work``, and compare (Rules 1-3)."""
    boxes = windows if windows is not None else measure_windows(width, height)
    pad, align = crop_margins(denoised=denoised)
    comparisons = []
    async with await backend.start_session(blend, work, threads=threads, limits=limits) as session:
        started = trio.current_time()
        whole = await session.render([frame])
        frame_seconds = trio.current_time() - started
        full = whole[0].path.read_bytes()  # the session writes each render afresh: keep the frame's bytes
        windows_started = trio.current_time()
        for box in boxes:
            rendered = await session.render([frame], window=crop_region(box, width, height, denoised=denoised))
            compare = functools.partial(compare_window, full, rendered[0].path, box, width=width, height=height, pad=pad, align=align)
            comparisons.append(await trio.to_thread.run_sync(compare))
        window_seconds = (trio.current_time() - windows_started) / max(1, len(boxes))
    return CropMeasure(frame=frame, windows=boxes, comparisons=tuple(comparisons), frame_seconds=frame_seconds, window_seconds=window_seconds)
