"""Windows of a frame: what a crop render covers, and its comparison with a delivered frame.

A crop check renders only a window of a frame (Blender's render border,
cropped to it) and compares it with the same pixels of the frame a friend
delivered. Coordinates are pixels of the full frame counted from its top-left
corner, rows going down, as in the decoded image; `_inblender.py` turns them
into Blender's border, which counts rows from the bottom.

Rules:

1. A window lies inside its frame and covers at least `MIN_WINDOW_FRACTION` of
   the image it is compared with (the frame, or the tile of a still in tiles; a
   session renders windows down to `MIN_RENDER_FRACTION` of the frame): a smaller one holds too few pixels for the agreement rule's
   fractions to mean anything, and costs little less to render (the fixed
   per-render cost dominates it).
2. A window may be rendered padded (grown by `pad` pixels on each side, clipped
   to the frame) and is then compared in its centre only: the denoiser sees the
   edges of a cropped render differently from the same pixels inside the full
   frame.
3. A padded window may also be aligned: its edges pushed out to a grid of
   `align` pixels counted from the frame's bottom-left corner, where Blender's
   image buffers start. OpenImageDenoise's network halves the image four times,
   so it treats two renders alike only where they are shifted by a multiple of
   16 pixels: measured on the demo scene with the denoiser (480x270, 16
   samples), a crop padded by 16 differs from the frame by up to 11/255
   unaligned and only by Blender's dither (2/255) aligned, for about 20% more
   area (docs/verification.md). `CROP_PADDING` and `CROP_ALIGNMENT` are those
   measured settings.
4. Without the denoiser a window needs neither: a Cycles pixel depends only on
   its own samples (the pixel filter is importance-sampled), so an unpadded crop
   equals the frame up to the dither; measured on the demo and test scenes.
   `crop_margins` says which applies; padding is a fixed number of pixels, so it
   costs most on small frames (bench/crop_cost.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from attrs import frozen

from ._compare import BadImage, Comparison, Tolerance, compare_pixels, decode_png

__all__ = [
    "CROP_ALIGNMENT", "CROP_PADDING", "MIN_RENDER_FRACTION", "MIN_WINDOW_FRACTION", "BadWindow", "Window", "compare_window", "crop_margins", "crop_region",
]

MIN_WINDOW_FRACTION = 1 / 16
# What a session renders at the least: a crop check of the smallest tile (1/16 of a 16 x 16 grid's tile).
# The comparison keeps MIN_WINDOW_FRACTION of the image it compares with (the frame, or the tile).
MIN_RENDER_FRACTION = MIN_WINDOW_FRACTION / 256
CROP_PADDING = 16  # pixels added on each side of a window before it is rendered
CROP_ALIGNMENT = 16  # the grid the padded window's edges are pushed out to
Px = TypeVar("Px", bound=np.generic)  # an image's pixel type: a window of it has the same


def crop_margins(*, denoised: bool) -> tuple[int, int]:
    """The padding and alignment a window of a file is rendered with (Rules 2 to 4)."""
    return (CROP_PADDING, CROP_ALIGNMENT) if denoised else (0, 1)


def crop_region(box: Window, frame_width: int, frame_height: int, *, denoised: bool) -> Window:
    """The box a checker renders for window ``box`` of a file with or without the denoiser."""
    pad, align = crop_margins(denoised=denoised)
    return box.padded(pad, frame_width, frame_height, align=align)


class BadWindow(ValueError):
    """A window outside its frame, or smaller than the minimum: the caller's error, raised before any render."""


@frozen(kw_only=True)
class Window:
    """A rectangle of a frame in pixels: `left`, `top` from the top-left corner, then its size."""

    left: int
    top: int
    width: int
    height: int
    # Rendered in place: Blender's border without the crop, so the image is the whole frame with only this
    # window rendered. Its pixels then equal the frame's exactly in 8-bit too, where a cropped render's
    # dither noise (placed from the image's corner) differs by up to 2/255: how a tile of an 8-bit frame is rendered.
    in_place: bool = False
    # Written as 8-bit PNG whatever the file's format: a tile of a JPEG frame, whose JPEG is encoded once from the
    # stitched pixels (re-encoding JPEG tiles would not give the frame a whole render writes).
    lossless: bool = False

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.height

    def check(self, frame_width: int, frame_height: int, *, min_fraction: float = MIN_WINDOW_FRACTION) -> None:
        """Raise BadWindow unless this window lies inside the frame and covers at least `min_fraction` of it."""
        if self.width < 1 or self.height < 1:
            raise BadWindow(f"window {self} is empty")
        if self.left < 0 or self.top < 0 or self.right > frame_width or self.bottom > frame_height:
            raise BadWindow(f"window {self} is not inside the {frame_width}x{frame_height} frame")
        if self.width * self.height < min_fraction * frame_width * frame_height:
            raise BadWindow(
                f"window {self} covers {self.width * self.height} pixels,"
                f" less than {min_fraction:.4g} of the {frame_width}x{frame_height} frame"
            )

    def padded(self, pad: int, frame_width: int, frame_height: int, *, align: int = 1) -> Window:
        """This window grown by `pad` pixels on each side, its edges pushed out to a grid of `align` pixels
        from the frame's bottom-left corner, clipped to the frame."""
        if pad < 0 or align < 1:
            raise BadWindow(f"padding must not be negative nor alignment below 1, not {pad} and {align}")
        left = (max(self.left - pad, 0) // align) * align
        right = min(-(-(self.right + pad) // align) * align, frame_width)
        # Rows from the bottom edge, where Blender's buffers start.
        low = (max(frame_height - self.bottom - pad, 0) // align) * align
        high = min(-(-(frame_height - self.top + pad) // align) * align, frame_height)
        return Window(left=left, top=frame_height - high, width=right - left, height=high - low)

    def of(self, pixels: npt.NDArray[Px], origin: Window | None = None) -> npt.NDArray[Px]:
        """This window's pixels out of an image of the full frame, or of the image of window `origin`."""
        dx, dy = (0, 0) if origin is None else (origin.left, origin.top)
        return pixels[self.top - dy : self.bottom - dy, self.left - dx : self.right - dx]


def compare_window(
    full: Path | bytes,
    window_image: Path | bytes,
    box: Window,
    *,
    width: int,
    height: int,
    pad: int = 0,
    align: int = 1,
    tolerance: Tolerance = Tolerance(),
    min_fraction: float = MIN_WINDOW_FRACTION,
) -> Comparison:
    """Compare a crop render of `box` (padded by `pad`, aligned to `align`) with the same pixels of a full frame.

    `window_image` must be exactly `box.padded(pad, width, height, align=align)` in size; only
    `box` itself, the centre of a padded render, is compared, under the same rule
    as whole frames. A window image of the wrong size is BadImage (a fault); a box
    outside the frame or below `min_fraction` of it is BadWindow (the caller's).
    """
    box.check(width, height, min_fraction=min_fraction)
    rendered = box.padded(pad, width, height, align=align)
    try:
        crop = decode_png(window_image, width=rendered.width, height=rendered.height)
    except BadImage as error:
        raise BadImage(f"window image: {error}") from None
    frame = decode_png(full, width=width, height=height)
    return compare_pixels(box.of(frame), box.of(crop, rendered), tolerance=tolerance)
