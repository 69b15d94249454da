"""The artist's output formats: Blender's names, size checks before decoding, comparison in each format's precision.

Frames are rendered by real Blender in each format (make_formats.py), then
decoded and compared here; forged files are made from them.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from frender.blender import _formats
from frender.blender import BadImage, OutputFormat, compare_output, decode_output, output_name, output_size
from frender.blender._formats import VALID_EXTENSIONS

HERE = Path(__file__).parent
W, H = 64, 36

pytestmark = pytest.mark.blender

FORMATS = {
    "png8.png": OutputFormat(file_format="PNG", color_depth="8", color_mode="RGBA"),
    "png16.png": OutputFormat(file_format="PNG", color_depth="16", color_mode="RGBA"),
    "png16bw.png": OutputFormat(file_format="PNG", color_depth="16", color_mode="BW"),
    "jpeg.jpg": OutputFormat(file_format="JPEG", color_depth="8", color_mode="RGB"),
    "tiff8.tif": OutputFormat(file_format="TIFF", color_depth="8", color_mode="RGBA"),
    "tiff16.tif": OutputFormat(file_format="TIFF", color_depth="16", color_mode="RGB"),
    "exr_half.exr": OutputFormat(file_format="OPEN_EXR", color_depth="16", color_mode="RGBA"),
    "exr_float.exr": OutputFormat(file_format="OPEN_EXR", color_depth="32", color_mode="RGB"),
    "exr_multilayer.exr": OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGBA"),
}


@pytest.fixture(scope="module")
def frames(bpy_backend, tmp_path_factory) -> Path:
    """One frame per format, rendered by Blender, and Blender's naming table."""
    out = tmp_path_factory.mktemp("formats")
    subprocess.run([sys.executable, "-E", "-P", str(HERE / "make_formats.py"), "--", str(out)], check=True, capture_output=True)
    return out


def test_names_follow_blenders_rules(frames):
    """output_name gives exactly the file name Blender's frame_path gives, for every pattern, format and frame."""
    table = json.loads((frames / "names.json").read_text())
    assert len(table) > 200
    for fmt, pattern, use_extension, extension, frame, blenders in table:
        ours = output_name(pattern.removeprefix("//").split("/")[-1], frame, extension if use_extension else None, valid=VALID_EXTENSIONS[fmt])
        assert ours == blenders, (fmt, pattern, use_extension, frame)


def test_every_format_decodes_in_its_own_precision(frames):
    """16-bit frames keep 16 bits, EXR keeps floats, multilayer keeps its passes."""
    decoded = {name: decode_output(frames / name, fmt, width=W, height=H) for name, fmt in FORMATS.items()}
    for name, fmt in FORMATS.items():
        assert output_size(frames / name, fmt) == (W, H)
        expected = {"8bit": np.uint8, "16bit": np.uint16, "float": np.float32}[fmt.precision]
        assert all(p.dtype == expected and p.shape[:2] == (H, W) for p in decoded[name].values()), name
    png16 = decoded["png16.png"][""]
    assert png16.max() > 255 and np.any(png16 % 257 != 0)  # real 16-bit data, not 8-bit scaled up
    assert np.any(decoded["tiff16.tif"][""] % 257 != 0)
    floats = decoded["exr_float.exr"][""]
    assert np.any(np.abs(floats * 255 - np.round(floats * 255)) > 1e-3)  # not 8-bit values
    assert {"ViewLayer.Combined", "ViewLayer.Depth", "ViewLayer.Normal"} <= set(decoded["exr_multilayer.exr"])


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:]


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    at = 2
    while True:
        marker, (length,) = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])
        if 0xC0 <= marker <= 0xC2:
            return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]
        at += 2 + length


def test_sizes_are_checked_from_headers_before_any_decoding(frames, tmp_path, monkeypatch):
    """A frame of the wrong size, in every format, is refused; forged 100k x 100k headers are refused before any
    decoder or byte check sees the frame."""
    for name, fmt in FORMATS.items():
        with pytest.raises(BadImage, match="the job is 32x36"):
            decode_output(frames / name, fmt, width=32, height=H)
    forged = {
        "png8.png": _patch_png_size((frames / "png8.png").read_bytes(), 100_000, 100_000),
        "jpeg.jpg": _patch_jpeg_size((frames / "jpeg.jpg").read_bytes(), 60_000, 60_000),
    }
    with monkeypatch.context() as patched:  # past the header, nothing may read the frame
        def never(*args, **kwargs):
            raise AssertionError("a frame of the wrong size reached a decoder")

        for where, attr in ((_formats, "check_frame_bytes"), (_formats, "decode_png"), (_formats.Image, "open")):
            patched.setattr(where, attr, never)
        for name, data in forged.items():
            path = tmp_path / name
            path.write_bytes(data)
            with pytest.raises(BadImage, match="the job is 64x36"):
                decode_output(path, FORMATS[name], width=W, height=H)
    # Another format than the job's is refused by its signature.
    with pytest.raises(BadImage, match="not a OpenEXR"):
        decode_output(frames / "png8.png", FORMATS["exr_half.exr"], width=W, height=H)
    with pytest.raises(BadImage, match="not a PNG 16"):
        decode_output(frames / "tiff16.tif", FORMATS["png16.png"], width=W, height=H)
    truncated = tmp_path / "cut.exr"
    truncated.write_bytes((frames / "exr_half.exr").read_bytes()[:400])
    with pytest.raises(BadImage):
        decode_output(truncated, FORMATS["exr_half.exr"], width=W, height=H)


def _edited_exr(source: Path, dest: Path, edit) -> Path:
    import OpenEXR

    with OpenEXR.File(str(source), separate_channels=True) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                edit(name, channel.pixels)
        exr.write(str(dest))
    return dest


def test_multilayer_frames_are_compared_pass_by_pass(frames, tmp_path):
    """A depth pass off by 10% disagrees though the image agrees; float noise far below the tolerance agrees."""
    source, fmt = frames / "exr_multilayer.exr", FORMATS["exr_multilayer.exr"]
    assert compare_output(source, source, fmt, width=W, height=H).verdict == "identical"

    def deeper(name: str, pixels: np.ndarray) -> None:
        if ".Depth." in name:
            pixels *= 1.1

    def jitter(name: str, pixels: np.ndarray) -> None:
        if ".Combined." in name:
            pixels *= 1 + 1e-4

    off = compare_output(source, _edited_exr(source, tmp_path / "deep.exr", deeper), fmt, width=W, height=H)
    assert off.verdict == "disagree" and off.fraction_off > 0.5
    near = compare_output(source, _edited_exr(source, tmp_path / "near.exr", jitter), fmt, width=W, height=H)
    assert near.verdict == "agree"


def test_sixteen_bit_frames_use_the_eight_bit_rule_scaled(frames, tmp_path):
    """A 16-bit frame off by 1/65535 agrees; one off by 8/255 everywhere disagrees."""
    import png

    fmt = FORMATS["png16.png"]
    pixels = decode_output(frames / "png16.png", fmt, width=W, height=H)[""].astype(np.int64)

    def write(name: str, values: np.ndarray) -> Path:
        path = tmp_path / name
        with open(path, "wb") as file:
            png.Writer(W, H, alpha=True, bitdepth=16, greyscale=False).write(file, np.clip(values, 0, 65535).reshape(H, W * 4).tolist())
        return path

    assert compare_output(frames / "png16.png", write("one.png", pixels + 1), fmt, width=W, height=H).verdict == "agree"
    assert compare_output(frames / "png16.png", write("far.png", pixels + 8 * 257), fmt, width=W, height=H).verdict == "disagree"
    shutil.rmtree(tmp_path)


def test_every_honest_frame_fits_its_jobs_bound_and_nothing_may_follow_a_png_or_jpeg(frames, tmp_path):
    """Blender's own frame of every format is within max_frame_bytes, passes the arrival check and decodes; bytes after
    PNG IEND or JPEG EOI are refused by both."""
    from frender.blender import check_output, max_frame_bytes

    for name, fmt in FORMATS.items():
        size = (frames / name).stat().st_size
        assert size <= max_frame_bytes(fmt.file_format, fmt.color_depth, fmt.color_mode, W, H), name
        check_output(frames / name, fmt, width=W, height=H)
        with pytest.raises(BadImage, match="the job is 32x36"):
            check_output(frames / name, fmt, width=32, height=H)
        if fmt.file_format in ("PNG", "JPEG"):
            padded = tmp_path / name
            padded.write_bytes((frames / name).read_bytes() + b"\0")
            with pytest.raises(BadImage, match="follow"):
                decode_output(padded, fmt, width=W, height=H)
            with pytest.raises(BadImage, match="follow"):
                check_output(padded, fmt, width=W, height=H)
