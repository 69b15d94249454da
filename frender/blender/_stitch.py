"""Stitching: a frame assembled from its tiles, in the artist's own format and precision.

Rules:

1. Tiles are the frame's windows rendered with Blender's render border, cropped,
   or in place (`_window`: the frame's image with only the tile rendered, which
   keeps an 8-bit frame's dither exact); without the denoiser a Cycles pixel depends only on its own
   samples, so the stitched frame holds exactly the pixels of a whole-frame
   render. Stitching only places pixels: it never converts, filters or
   re-quantises them, so 8- and 16-bit PNG and TIFF, and OpenEXR half and
   float, keep every value; a multilayer EXR keeps every pass (every channel
   of every part, with its own pixel type).
2. The tiles must cover the frame exactly once and agree on their channels
   (names, count, pixel type); otherwise `BadStitch`, and nothing is written.
3. The file is written beside its target and renamed into place, so a reader
   never sees half a frame. JPEG is lossy: JPEG tiles cannot be stitched into
   the frame a whole render would write, so it is refused (`stitchable`); a
   JPEG job's tiles are PNG, stitched here and encoded once (`_jpeg`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ._formats import OutputFormat
from ._window import Window

Image = npt.NDArray[Any]  # a tile's or a frame's samples, in the file's own type

__all__ = ["BadStitch", "stitch", "stitchable"]


class BadStitch(ValueError):
    """Tiles that do not make one frame: gaps, overlaps, or channels that differ."""


def stitchable(fmt: OutputFormat) -> str:
    """Why frames of ``fmt`` cannot be stitched exactly ("" when they can)."""
    if fmt.file_format == "JPEG":
        return "JPEG is lossy: tiles re-encoded into one frame are not the frame a whole render writes"
    if fmt.file_format not in ("PNG", "TIFF", "OPEN_EXR", "OPEN_EXR_MULTILAYER"):
        return f"{fmt.describe()} frames are not stitched"
    return ""


def stitch(tiles: Sequence[tuple[Window, Path]], fmt: OutputFormat, *, width: int, height: int, out: Path) -> Path:
    """Write the ``width`` x ``height`` frame made of ``tiles`` (each its window and its file) to ``out``."""
    why = stitchable(fmt)
    if why:
        raise BadStitch(why)
    cover = np.zeros((height, width), np.int32)
    for box, _ in tiles:
        box.check(width, height, min_fraction=0.0)
        cover[box.top : box.bottom, box.left : box.right] += 1
    if not (cover == 1).all():
        raise BadStitch("the tiles do not cover the frame exactly once")
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)  # one of its own per stitch
    os.close(fd)
    tmp = Path(name)
    try:
        if fmt.file_format.startswith("OPEN_EXR"):
            _stitch_exr(tiles, width, height, tmp)
        elif fmt.file_format == "PNG":
            _stitch_png(tiles, width, height, tmp)
        else:
            _stitch_tiff(tiles, width, height, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _place(images: list[tuple[Window, Image]], width: int, height: int) -> Image:
    """The frame of tiles, each its box's size or the whole frame's (rendered in place: its box is taken)."""
    first = images[0][1]
    frame = np.zeros((height, width, *first.shape[2:]), first.dtype)
    for box, pixels in images:
        if pixels.shape[:2] == (height, width):
            pixels = box.of(pixels)
        if pixels.shape[:2] != (box.height, box.width) or pixels.shape[2:] != first.shape[2:] or pixels.dtype != first.dtype:
            raise BadStitch(f"a tile of {pixels.shape} {pixels.dtype} does not fit its {box.width}x{box.height} box beside the others")
        frame[box.top : box.bottom, box.left : box.right] = pixels
    return frame


def _stitch_png(tiles: Sequence[tuple[Window, Path]], width: int, height: int, out: Path) -> None:
    """8-bit through Pillow (fast), in the tiles' own mode (L, LA, RGB, RGBA); 16-bit through pypng (Pillow has no
    16-bit colour)."""
    from PIL import Image

    with open(tiles[0][1], "rb") as file:
        bit_depth = file.read(25)[24:25]  # IHDR's bit depth: Pillow reads 16-bit colour as 8-bit
    with Image.open(tiles[0][1], formats=["PNG"]) as first:
        mode = first.mode
    if bit_depth == b"\x08" and mode in ("L", "LA", "RGB", "RGBA"):
        images = []
        for box, path in tiles:
            with Image.open(path, formats=["PNG"]) as image:
                if image.mode != mode:
                    raise BadStitch(f"the tiles' PNG modes differ ({image.mode}, {mode})")
                pixels = np.asarray(image)
            images.append((box, pixels.reshape(pixels.shape[0], pixels.shape[1], -1)))
        frame = _place(images, width, height)
        Image.fromarray(frame if frame.shape[2] > 1 else frame[..., 0], mode).save(out, "PNG", compress_level=6)
        return
    _stitch_png16(tiles, width, height, out)


def _stitch_png16(tiles: Sequence[tuple[Window, Path]], width: int, height: int, out: Path) -> None:
    import png

    images = []
    info: dict[str, Any] = {}
    for box, path in tiles:
        w, h, rows, meta = png.Reader(filename=str(path)).asDirect()
        planes = meta["planes"]
        dtype = np.uint16 if meta["bitdepth"] > 8 else np.uint8
        pixels = np.vstack([np.asarray(row, dtype=dtype) for row in rows]).reshape(h, w, planes)
        key = {"bitdepth": meta["bitdepth"], "greyscale": meta["greyscale"], "alpha": meta["alpha"], "planes": planes}
        if info and key != info:
            raise BadStitch("the tiles' PNG layouts differ")
        info = key
        images.append((box, pixels))
    frame = _place(images, width, height)
    writer = png.Writer(width, height, bitdepth=info["bitdepth"], greyscale=info["greyscale"], alpha=info["alpha"], compression=6)
    with open(out, "wb") as file:
        writer.write(file, frame.reshape(height, width * info["planes"]))


def _stitch_tiff(tiles: Sequence[tuple[Window, Path]], width: int, height: int, out: Path) -> None:
    import tifffile

    images = []
    for box, path in tiles:
        pixels = tifffile.imread(path)
        images.append((box, pixels.reshape(pixels.shape[0], pixels.shape[1], -1)))
    frame = _place(images, width, height)
    photometric = "minisblack" if frame.shape[2] in (1, 2) else "rgb"
    extra = ("unassalpha",) if frame.shape[2] in (2, 4) else None
    tifffile.imwrite(out, frame if frame.shape[2] > 1 else frame[..., 0], photometric=photometric, extrasamples=extra, compression="zlib")


def _stitch_exr(tiles: Sequence[tuple[Window, Path]], width: int, height: int, out: Path) -> None:
    """Every part (Blender 5 writes a multilayer file's passes as parts) and every channel, each in its own type."""
    import OpenEXR

    layout: list[tuple[str, tuple[str, ...]]] | None = None
    headers: list[dict[str, Any]] = []
    channels: list[dict[str, list[tuple[Window, Image]]]] = []
    for box, path in tiles:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            these = [(part.name(), tuple(sorted(part.channels))) for part in exr.parts]
            if layout is not None and these != layout:
                raise BadStitch("the tiles' EXR parts or channels differ")
            if layout is None:
                layout = these
                headers = [{k: v for k, v in part.header.items() if k not in _WINDOWED} for part in exr.parts]
                channels = [{} for _ in exr.parts]
            for index, part in enumerate(exr.parts):
                for name, channel in part.channels.items():
                    pixels = np.asarray(channel.pixels)
                    channels[index].setdefault(name, []).append((box, pixels.reshape(pixels.shape[0], pixels.shape[1], 1)))
    assert layout is not None
    whole = (np.array([0, 0], dtype=np.int32), np.array([width - 1, height - 1], dtype=np.int32))
    parts = []
    for (name, _), header, by_name in zip(layout, headers, channels):
        header = {**header, "dataWindow": whole, "displayWindow": (whole[0].copy(), whole[1].copy())}
        placed = {channel: OpenEXR.Channel(np.ascontiguousarray(_place(images, width, height)[..., 0])) for channel, images in by_name.items()}
        parts.append(OpenEXR.Part(header, placed, name))
    with OpenEXR.File(parts if len(parts) > 1 else parts[0].header, *([] if len(parts) > 1 else [parts[0].channels])) as exr:
        exr.write(str(out))


_WINDOWED = frozenset({"channels", "dataWindow", "displayWindow", "chunkCount", "type", "name"})  # set from the stitched frame
