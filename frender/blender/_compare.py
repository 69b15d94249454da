"""Comparing frames from peers: PNG only, size-checked before decoding, on pixels.

Frames come from untrusted friends, so decoding is the attack surface: only
PNG is accepted, and the width and height in the IHDR chunk are checked against
the job before any pixel is decompressed (a 100k x 100k header is refused
outright). Pixels, never file bytes, are compared: PNG metadata holds render
times, so honest files differ byte-wise.

Cost. A 1920x1080 RGBA frame is 8 MB of pixels: inflating and unfiltering it
is most of a requester's CPU per frame, and each decode holds two or three
such buffers. So decodes run at most one per core at a time (more only add
memory: with a thread per delivery, dozens of frames would be decoded side by
side), nothing is converted that is already RGBA, and ``compare`` settles
equal pixels with one pass before doing any arithmetic.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from attrs import frozen
from PIL import Image

__all__ = ["BadImage", "Comparison", "Tolerance", "compare", "compare_pixels", "decode_png", "png_size"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Decodes in progress at once, over every thread of the process.
_DECODING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


class BadImage(ValueError):
    """A frame that is not a PNG of the job's size, or does not decode: a fault, not a cheat."""


@frozen(kw_only=True)
class Tolerance:
    """How far two renders of one profile may differ and still agree (8-bit frames): two tiers.

    Set from measurements (bench/agreement.py, docs/verification.md). Honest
    full frames of one profile are identical; honest crops (padded and aligned,
    see `_window`) differ by Blender's dither (up to 2/255) and, on a tiny
    noisy frame with the denoiser, by more in a few pixels (at most 14 of 144
    beyond 2/255, 2 beyond 4/255, none beyond 5/255). A render with a quarter
    of the samples, denoised, has 0.76% or more of a crop's pixels off by more
    than 4/255 at 16 samples, and 0.65% or more beyond 2/255 at 64 samples.
    So renders agree while at most 0.1% of their pixels (or 3, in a small
    image) are off by more than 4/255 and at most 0.2% (or 16) by more than
    the dither.
    """

    pixel_threshold: int = 4  # a pixel is "off" when a channel differs by more than this (of 255)
    max_fraction_off: float = 0.001  # renders agree while at most this fraction of pixels is off...
    stray_pixels: int = 3  # ...or at most this many, in an image too small for the fraction to allow them
    dither_threshold: int = 2  # Blender's dither moves an honest crop's pixels by up to this
    max_fraction_over_dither: float = 0.002  # and at most this fraction of pixels differs by more than the dither...
    stray_over_dither: int = 16  # ...or at most this many

    def allowed_off(self, pixels: int) -> int:
        """How many of `pixels` may be off in renders that agree."""
        return max(math.floor(self.max_fraction_off * pixels), self.stray_pixels)

    def allowed_over_dither(self, pixels: int) -> int:
        """How many of `pixels` may differ by more than the dither in renders that agree."""
        return max(math.floor(self.max_fraction_over_dither * pixels), self.stray_over_dither)


@frozen(kw_only=True)
class Comparison:
    """The verdict on two frames, with the figures behind it."""

    verdict: Literal["identical", "agree", "disagree"]
    fraction_off: float
    max_diff: int
    psnr: float  # dB; inf when identical
    fraction_over_dither: float = 0.0  # pixels differing by more than the tolerance's dither threshold


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, without decoding anything."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise BadImage("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decode_png(data: Path | bytes, *, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Decode a PNG of exactly width x height into an RGBA uint8 array (height, width, 4)."""
    with _DECODING:  # the file's bytes too are read only when its turn comes
        return _decode(data.read_bytes() if isinstance(data, Path) else data, width=width, height=height)


def _decode(data: bytes, *, width: int, height: int) -> npt.NDArray[np.uint8]:
    size = png_size(data)
    if size != (width, height):
        raise BadImage(f"PNG is {size[0]}x{size[1]}, the job is {width}x{height}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if image.mode == "RGBA":
                    image.load()
                    return np.asarray(image)
                return np.asarray(image.convert("RGBA"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage(f"PNG does not decode: {error}") from None


def compare(
    a: Path | bytes, b: Path | bytes, *, width: int, height: int, tolerance: Tolerance = Tolerance()
) -> Comparison:
    """Compare two frames pixel by pixel and give a verdict under `tolerance`."""
    pixels_a = decode_png(a, width=width, height=height)
    pixels_b = decode_png(b, width=width, height=height)
    return compare_pixels(pixels_a, pixels_b, tolerance=tolerance)


def compare_pixels(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], *, tolerance: Tolerance = Tolerance()) -> Comparison:
    """The verdict on two decoded 8-bit images of one shape (height, width, channels) under `tolerance`."""
    if a.shape != b.shape:
        raise ValueError(f"images of different shapes: {a.shape} and {b.shape}")
    if np.array_equal(a, b):  # honest renders of one profile, mostly: no arithmetic needed
        return Comparison(verdict="identical", fraction_off=0.0, max_diff=0, psnr=math.inf)
    diff = np.maximum(a, b)
    diff -= np.minimum(a, b)  # |a - b| in uint8, without widening the image
    max_diff = int(diff.max())
    per_pixel = diff.max(axis=2)
    pixels = per_pixel.size
    pixels_off = int(np.count_nonzero(per_pixel > tolerance.pixel_threshold))
    over_dither = int(np.count_nonzero(per_pixel > tolerance.dither_threshold))
    # The squared error from a histogram of the differences: exact, and no float copy of the image.
    counts = np.bincount(diff.ravel(), minlength=256)
    mse = float(counts @ (np.arange(256, dtype=np.int64) ** 2)) / diff.size
    psnr = 10 * math.log10(255**2 / mse)
    verdict: Literal["identical", "agree", "disagree"]
    if pixels_off <= tolerance.allowed_off(pixels) and over_dither <= tolerance.allowed_over_dither(pixels):
        verdict = "agree"
    else:
        verdict = "disagree"
    return Comparison(verdict=verdict, fraction_off=pixels_off / pixels, max_diff=max_diff, psnr=psnr,
                      fraction_over_dither=over_dither / pixels)
