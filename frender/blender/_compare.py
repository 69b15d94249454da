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

__all__ = ["BadImage", "Comparison", "Tolerance", "compare", "decode_png", "png_size"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Decodes in progress at once, over every thread of the process.
_DECODING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


class BadImage(ValueError):
    """A frame that is not a PNG of the job's size, or does not decode: a fault, not a cheat."""


@frozen(kw_only=True)
class Tolerance:
    """How far honest renders may differ: Blender's own render-test tolerance by default."""

    pixel_threshold: int = 4  # a pixel is "off" when a channel differs by more than this (of 255)
    max_fraction_off: float = 0.01  # renders agree while at most this fraction of pixels is off


@frozen(kw_only=True)
class Comparison:
    """The verdict on two frames, with the figures behind it."""

    verdict: Literal["identical", "agree", "disagree"]
    fraction_off: float
    max_diff: int
    psnr: float  # dB; inf when identical


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
    if np.array_equal(pixels_a, pixels_b):  # honest renders of one profile, mostly: no arithmetic needed
        return Comparison(verdict="identical", fraction_off=0.0, max_diff=0, psnr=math.inf)
    diff = np.maximum(pixels_a, pixels_b)
    diff -= np.minimum(pixels_a, pixels_b)  # |a - b| in uint8, without widening 8 MB twice
    max_diff = int(diff.max())
    fraction_off = float(np.count_nonzero(diff.max(axis=2) > tolerance.pixel_threshold)) / (width * height)
    # The squared error from a histogram of the differences: exact, and no float copy of the image.
    counts = np.bincount(diff.ravel(), minlength=256)
    mse = float(counts @ (np.arange(256, dtype=np.int64) ** 2)) / diff.size
    psnr = 10 * math.log10(255**2 / mse)
    verdict: Literal["agree", "disagree"]
    if fraction_off <= tolerance.max_fraction_off:
        verdict = "agree"
    else:
        verdict = "disagree"
    return Comparison(verdict=verdict, fraction_off=fraction_off, max_diff=max_diff, psnr=psnr)
