"""Comparing frames on decoded pixels, with size checks before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from frender.blender import BadImage, Tolerance, compare, decode_png

W, H = 40, 20


def png(pixels: np.ndarray, mode: str = "RGBA", **info) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG", **info)
    return buffer.getvalue()


def ramp() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 6, y * 12, x + y, np.full_like(x, 255)], axis=2).astype(np.uint8)


def test_identical_pixels_ignore_metadata():
    """Same pixels with different PNG metadata (and RGB vs RGBA) are identical."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("RenderTime", "00:01.23")
    result = compare(png(ramp()), png(ramp()[..., :3].copy(), "RGB", pnginfo=meta), width=W, height=H)
    assert (result.verdict, result.max_diff, result.psnr) == ("identical", 0, float("inf"))


def test_small_noise_agrees_and_large_disagrees():
    """A few pixels off by a lot still agree; many pixels off disagree."""
    base = ramp()
    few = base.copy()
    few[0, :3, 0] ^= 0x80  # 3 of 800 pixels: the stray pixels any image may have
    many = base.copy()
    many[:, :, 1] = 255 - many[:, :, 1]
    assert compare(png(base), png(few), width=W, height=H).verdict == "agree"
    off = compare(png(base), png(many), width=W, height=H)
    assert off.verdict == "disagree" and off.fraction_off > 0.5
    strict = Tolerance(max_fraction_off=0.001, stray_pixels=2)
    assert compare(png(base), png(few), width=W, height=H, tolerance=strict).verdict == "disagree"


def test_tolerance_threshold_is_exclusive():
    """Differences of exactly the threshold do not count as off; differences within the dither agree everywhere."""
    for by, verdict in ((2, "agree"), (4, "disagree")):
        shifted = ramp().copy()
        shifted[..., 2] = np.minimum(shifted[..., 2].astype(int) + by, 255).astype(np.uint8)
        result = compare(png(ramp()), png(shifted), width=W, height=H)
        assert (result.verdict, result.fraction_off, result.max_diff) == (verdict, 0, by)


def test_wrong_size_refused():
    """A frame of the wrong size is BadImage."""
    with pytest.raises(BadImage, match="the job is 41x20"):
        decode_png(png(ramp()), width=41, height=20)


def test_huge_header_refused_without_decoding():
    """A 100k x 100k IHDR is refused from the header alone."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb = b"\x89PNG\r\n\x1a\n" + chunk
    with pytest.raises(BadImage, match="100000x100000"):
        decode_png(bomb, width=W, height=H)


@pytest.mark.parametrize("data", [b"", b"GIF89a" + bytes(40), b"\xff\xd8\xff\xe0" + bytes(40)])
def test_not_png_refused(data):
    """Anything but PNG is BadImage, not a crash."""
    with pytest.raises(BadImage):
        decode_png(data, width=W, height=H)


def test_truncated_png_refused():
    """A PNG cut short is BadImage."""
    data = png(np.random.default_rng(1).integers(0, 256, (H, W, 4), dtype=np.uint8))
    with pytest.raises(BadImage, match="does not decode"):
        decode_png(data[: len(data) // 2], width=W, height=H)


def test_bad_image_is_not_a_blender_error():
    """A peer's bad frame is a ValueError (a fault), not a Blender failure."""
    from frender.blender import BlenderError

    assert issubclass(BadImage, ValueError) and not issubclass(BadImage, BlenderError)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=W * H * 4, max_size=W * H * 4))
def test_any_frame_is_identical_to_itself(raw):
    """compare(x, x) is identical for any pixels."""
    data = png(np.frombuffer(raw, np.uint8).reshape(H, W, 4))
    assert compare(data, data, width=W, height=H).verdict == "identical"


def _reference(a: np.ndarray, b: np.ndarray, threshold: int = 4) -> tuple[int, float, float]:
    """max_diff, fraction_off and PSNR computed the plain way, in wide integers and floats."""
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    return int(diff.max()), float(np.mean(diff.max(axis=2) > threshold)), psnr


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=W * H * 4, max_size=W * H * 4), st.integers(0, 255), st.integers(1, W * H))
def test_figures_match_the_plain_computation(raw, shift, changed):
    """compare's figures equal a plain wide-integer computation, for images equal or apart."""
    a = np.frombuffer(raw, np.uint8).reshape(H, W, 4).copy()
    b = a.copy().reshape(-1, 4)
    b[:changed, (changed % 4)] = (b[:changed, (changed % 4)].astype(int) + shift) % 256
    b = b.reshape(H, W, 4)
    result = compare(png(a), png(b), width=W, height=H)
    max_diff, fraction_off, psnr = _reference(a, b)
    assert (result.max_diff, result.fraction_off) == (max_diff, pytest.approx(fraction_off))
    assert result.psnr == pytest.approx(psnr)
    per_pixel = np.abs(a.astype(int) - b.astype(int)).max(axis=2)  # the two-tier rule, counted plainly
    rule = Tolerance()
    off, over_dither = int((per_pixel > rule.pixel_threshold).sum()), int((per_pixel > rule.dither_threshold).sum())
    agree = off <= rule.allowed_off(W * H) and over_dither <= rule.allowed_over_dither(W * H)
    assert result.verdict == ("identical" if max_diff == 0 else "agree" if agree else "disagree")
