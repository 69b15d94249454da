"""The artist's output: image formats Blender writes, their names, their decoding and comparison.

A frame comes back in the file's own format (PNG 8/16-bit, JPEG, TIFF 8/16-bit,
OpenEXR half or float, single layer or multilayer) and is verified in that
format's precision:

1. Every frame comes from an untrusted friend, so its header is read and its
   width and height checked against the job before any pixel is decoded
   (decompression bombs), for every format; a file whose signature is not the
   job's format is refused.
2. 8-bit frames (PNG 8, JPEG, TIFF 8) keep the 8-bit rule of `_compare`.
   16-bit frames use the same rule scaled to 16 bits. Float frames (EXR) are
   compared per pass (each layer of a multilayer file) with a relative
   tolerance, and the worst pass gives the verdict.
3. Blender's naming rules are kept (`output_name`): the last run of `#` in the
   file name is the frame number, four digits are appended when there is none,
   and with "file extensions" on a known image extension is replaced by the
   format's own or the format's is appended.
4. Video containers are refused: fRender verifies frames, not a video stream.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from attrs import frozen
from PIL import Image

from ._bounds import MAX_PASSES, check_frame_bytes, check_frame_container
from ._compare import BadImage, Comparison, Tolerance, decode_png, png_size
from ._compare import compare as compare_8bit

__all__ = [
    "FloatTolerance",
    "OutputFormat",
    "PNG8",
    "check_output",
    "compare_output",
    "decode_output",
    "output_name",
    "output_size",
    "unsupported_output",
]

# A decoded pass: uint8 or uint16 (height, width, channels) by the format's precision, float32 for EXR.
Pixels = npt.NDArray[np.number[Any]]

# Blender's list of image extensions (imb_ext_image): a name ending in one of these has it replaced.
IMAGE_EXTENSIONS = frozenset(
    ".png .tga .bmp .jpg .jpeg .sgi .rgb .rgba .tif .tiff .tx .jp2 .j2c .hdr .dds .dpx .cin .exr .rw2 .webp .psd .pdd .psb .avif".split()
)
VALID_EXTENSIONS = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "TIFF": (".tif", ".tiff"),
    "OPEN_EXR": (".exr",),
    "OPEN_EXR_MULTILAYER": (".exr",),
}
SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
    "OPEN_EXR": (b"\x76\x2f\x31\x01",),
    "OPEN_EXR_MULTILAYER": (b"\x76\x2f\x31\x01",),
}
HEADER_BYTES = 1 << 20  # JPEG: the frame header must come within the first MiB


@frozen(kw_only=True)
class OutputFormat:
    """An image format as Blender's output settings name it."""

    file_format: str = "PNG"  # PNG, JPEG, TIFF, OPEN_EXR, OPEN_EXR_MULTILAYER
    color_depth: str = "8"  # "8", "16"; EXR: "16" half, "32" float
    color_mode: str = "RGBA"  # BW, RGB, RGBA
    quality: int = 90  # JPEG's (Blender's default): a JPEG frame stitched from tiles is encoded at it

    @property
    def extension(self) -> str:
        """The extension Blender gives this format's files."""
        return VALID_EXTENSIONS[self.file_format][0]

    @property
    def precision(self) -> Literal["8bit", "16bit", "float"]:
        """The precision frames are compared in."""
        if self.file_format.startswith("OPEN_EXR"):
            return "float"
        return "16bit" if self.color_depth == "16" else "8bit"

    def describe(self) -> str:
        """A short human name: "OpenEXR multilayer float", "PNG 16-bit RGBA"."""
        if self.file_format.startswith("OPEN_EXR"):
            kind = "OpenEXR multilayer" if self.file_format == "OPEN_EXR_MULTILAYER" else "OpenEXR"
            return f"{kind} {'half' if self.color_depth == '16' else 'float'}"
        return f"{self.file_format} {self.color_depth}-bit {self.color_mode}"


PNG8 = OutputFormat()


@frozen(kw_only=True)
class FloatTolerance:
    """How far honest float renders may differ, relative to the value (absolute near zero)."""

    relative: float = 4 / 255  # the 8-bit rule's 4/255, as a fraction of the value
    floor: float = 1 / 255  # below this magnitude the difference is taken as absolute
    max_fraction_off: float = 0.01


def unsupported_output(media_type: str, file_format: str) -> str | None:
    """Why fRender cannot take a file with this output, or None when it can."""
    if media_type == "VIDEO" or file_format in ("FFMPEG", "AVI_JPEG", "AVI_RAW"):
        return (
            f"the file's output is a video ({file_format}): fRender renders and verifies frames one by one;"
            " choose an image format in Output Properties (PNG, JPEG, TIFF or OpenEXR);"
            " `frender submit --video shot.mp4` (or `frender video` afterwards) makes the video from the frames"
        )
    if file_format not in VALID_EXTENSIONS:
        return f"the file's output format {file_format} cannot be verified here: use PNG, JPEG, TIFF or OpenEXR"
    return None


def output_name(pattern: str, frame: int, extension: str | None, *, valid: Sequence[str] = ()) -> str:
    """The file name Blender gives `frame` for an output path whose last part is `pattern`.

    `extension` None: "file extensions" off. `valid`: extensions Blender keeps
    for this format (".jpeg" for JPEG); by default only `extension` itself.
    """
    if "#" not in pattern:
        pattern += "####"
    start = pattern.rfind("#")
    first = start
    while first > 0 and pattern[first - 1] == "#":
        first -= 1
    digits = start - first + 1
    number = ("-" if frame < 0 else "") + str(abs(frame)).zfill(digits)
    name = pattern[:first] + number + pattern[start + 1:]
    if extension is None:
        return name
    stem, dot, suffix = name.rpartition(".")
    current = f".{suffix}".lower() if dot else ""
    if current in (v.lower() for v in (*valid, extension)):
        return name
    if current in IMAGE_EXTENSIONS and stem:
        return stem + extension
    return name + extension


def _signature(head: bytes, fmt: OutputFormat) -> None:
    if not any(head.startswith(signature) for signature in SIGNATURES[fmt.file_format]):
        raise BadImage(f"not a {fmt.describe()} file")


def _jpeg_size(head: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's start-of-frame segment, reading headers only."""
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            raise BadImage("JPEG segments are corrupt")
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack(">H", head[at + 2:at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(head):
                break
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return width, height
        at += 2 + length
    raise BadImage("no JPEG frame header in the first MiB")


def _exr_sizes(path: Path) -> list[tuple[int, int]]:
    """Width and height of every part of an EXR, from its headers only."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path), header_only=True) as exr:
            sizes = []
            for part in exr.parts[: MAX_PASSES + 1]:
                low, high = part.header["dataWindow"]
                sizes.append((int(high[0]) - int(low[0]) + 1, int(high[1]) - int(low[1]) + 1))
            return sizes
    except Exception as error:  # the bindings raise RuntimeError and others for bad headers
        raise BadImage(f"EXR header does not read: {error}") from None


def output_size(path: Path, fmt: OutputFormat) -> tuple[int, int]:
    """The width and height a frame's header declares, checked to be of format `fmt`; no pixel decoded."""
    with open(path, "rb") as file:
        head = file.read(HEADER_BYTES)
    _signature(head, fmt)
    if fmt.file_format == "PNG":
        return png_size(head)
    if fmt.file_format == "JPEG":
        return _jpeg_size(head)
    if fmt.file_format == "TIFF":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tiff:
                if len(tiff.pages) != 1:
                    raise BadImage("a TIFF frame holds exactly one image")
                shape = tiff.pages[0].shape
                return int(shape[1]), int(shape[0])
        except (tifffile.TiffFileError, ValueError, IndexError) as error:
            raise BadImage(f"TIFF header does not read: {error}") from None
    sizes = _exr_sizes(path)
    if len(sizes) > MAX_PASSES:
        raise BadImage(f"EXR has more than {MAX_PASSES} parts")
    if len(set(sizes)) != 1:
        raise BadImage(f"EXR parts differ in size: {sorted(set(sizes))}")
    return sizes[0]


def _check_size(path: Path, fmt: OutputFormat, width: int, height: int) -> None:
    size = output_size(path, fmt)
    if size != (width, height):
        raise BadImage(f"{fmt.describe()} frame is {size[0]}x{size[1]}, the job is {width}x{height}")


def check_output(path: Path, fmt: OutputFormat, *, width: int, height: int) -> None:
    """What a frame's arrival checks, no pixel decoded: the format's signature, the size its header declares, its
    container whole (a PNG's chunks and their CRCs, a JPEG's segments, nothing after the image). About a millisecond
    for a 1080p PNG; its pixels are decoded, bounded as ``decode_output`` bounds them, only where it is compared."""
    _check_size(path, fmt, width, height)
    check_frame_container(path, fmt.file_format, width, height)


def decode_output(path: Path, fmt: OutputFormat, *, width: int, height: int) -> dict[str, Pixels]:
    """Decode a frame into its passes ({"": pixels} but for multilayer EXR), after checking its size.

    8-bit: uint8 (height, width, channels); 16-bit: uint16; EXR: float32 per channel group.
    """
    _check_size(path, fmt, width, height)
    check_frame_bytes(path, fmt.file_format, width, height)  # nothing after the image; no decompression bomb
    try:
        if fmt.file_format.startswith("OPEN_EXR"):
            return _decode_exr(path)
        if fmt.precision == "8bit":
            if fmt.file_format == "PNG":
                return {"": decode_png(path, width=width, height=height)}
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path, formats=[fmt.file_format]) as image:
                    return {"": np.asarray(image.convert("RGBA"))}
        if fmt.file_format == "PNG":
            import png

            reader = png.Reader(filename=str(path))
            w, h, rows, info = reader.read()
            pixels = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
            return {"": pixels.reshape(h, w, info["planes"])}
        import tifffile

        pixels = tifffile.imread(path)
        return {"": pixels.reshape(height, width, -1)}
    except BadImage:
        raise
    except Exception as error:  # every decoder has its own errors; any of them means a bad frame
        raise BadImage(f"{fmt.describe()} frame does not decode: {error}") from None


def _decode_exr(path: Path) -> dict[str, Pixels]:
    import OpenEXR

    passes: dict[str, list[tuple[str, npt.NDArray[np.float32]]]] = {}
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                layer, _, component = name.rpartition(".")
                passes.setdefault(layer, []).append((component, np.asarray(channel.pixels, dtype=np.float32)))
    return {layer: np.stack([pixels for _, pixels in sorted(channels, key=lambda c: c[0])], axis=-1) for layer, channels in passes.items()}


def compare_output(
    a: Path,
    b: Path,
    fmt: OutputFormat,
    *,
    width: int,
    height: int,
    tolerance: Tolerance = Tolerance(),
    float_tolerance: FloatTolerance = FloatTolerance(),
) -> Comparison:
    """Compare two frames of format `fmt` in its own precision; 8-bit PNG goes through `_compare` as before."""
    if fmt.file_format == "PNG" and fmt.precision == "8bit":
        for path in (a, b):  # Rule 3 of _bounds before any pixel is decoded (arrival checked the container only)
            check_frame_bytes(path, "PNG", width, height)
        return compare_8bit(a, b, width=width, height=height, tolerance=tolerance)
    passes_a = decode_output(a, fmt, width=width, height=height)
    passes_b = decode_output(b, fmt, width=width, height=height)
    if set(passes_a) != set(passes_b) or any(passes_a[k].shape != passes_b[k].shape for k in passes_a):
        return Comparison(verdict="disagree", fraction_off=1.0, max_diff=255, psnr=0.0)
    results = [_compare_pass(passes_a[k], passes_b[k], fmt, tolerance, float_tolerance) for k in sorted(passes_a)]
    worst = max(results, key=lambda r: (r.verdict == "disagree", r.fraction_off, r.max_diff))
    if all(r.verdict == "identical" for r in results):
        return worst
    verdict: Literal["agree", "disagree"] = "disagree" if any(r.verdict == "disagree" for r in results) else "agree"
    return Comparison(verdict=verdict, fraction_off=worst.fraction_off, max_diff=worst.max_diff, psnr=min(r.psnr for r in results))


def _compare_pass(a: Pixels, b: Pixels, fmt: OutputFormat, tolerance: Tolerance, ft: FloatTolerance) -> Comparison:
    """One pass: figures on the 0-255 scale for max_diff and PSNR, the verdict in the format's precision."""
    if fmt.precision == "float":
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(same, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
            scale = np.maximum(np.maximum(np.abs(a), np.abs(b)).astype(np.float64), ft.floor)
            relative = np.where(same, 0.0, np.nan_to_num(diff / scale, nan=np.inf, posinf=np.inf))
        off = relative.max(axis=-1) > ft.relative
        finite = np.nan_to_num(diff, nan=1.0, posinf=1.0)
        max_diff = int(math.ceil(min(float(finite.max(initial=0.0)), 1.0) * 255))
        fraction_off = float(np.mean(off))
        mse = float(np.mean(np.minimum(finite, 1.0) ** 2))
        identical = bool(same.all())
        max_fraction = ft.max_fraction_off
    else:
        full = 255 if fmt.precision == "8bit" else 65535
        diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
        threshold = tolerance.pixel_threshold * full / 255
        off = diff.max(axis=-1) > threshold
        fraction_off = float(np.mean(off))
        max_diff = int(math.ceil(int(diff.max(initial=0)) * 255 / full))
        mse = float(np.mean((diff / full) ** 2))
        identical = int(diff.max(initial=0)) == 0
        max_fraction = tolerance.max_fraction_off
    psnr = math.inf if mse == 0 else 10 * math.log10(1 / mse)
    if identical:
        verdict: Literal["identical", "agree", "disagree"] = "identical"
    elif fraction_off <= max_fraction:
        verdict = "agree"
    else:
        verdict = "disagree"
    return Comparison(verdict=verdict, fraction_off=fraction_off, max_diff=max_diff, psnr=psnr)
