"""A JPEG frame from tiles: stitched losslessly, then encoded once, as a whole render writes it.

Rules:

1. A JPEG job's tiles are rendered as 8-bit PNG in place (`Window.lossless`):
   their pixels are the frame's own 8-bit pixels, dither included, which a
   whole render hands to its JPEG writer.
2. The stitched pixels are encoded by Blender's own JPEG writer at the file's
   quality and colour mode (`BlenderBackend.encode_jpeg`). Measured with
   Blender 5.0.1: the image data (from the quantisation tables to the end)
   is then byte for byte a whole render's (docs/verification.md).
3. Blender writes a render's metadata as COM segments "Blender:key:value",
   after its JFIF and APP1 segments. The frame's are taken from its first
   tile's PNG text (the same keys, in the same order, that a render of the
   frame stamps), and nothing else: the writer's own notes about the PNG it
   read (colour space, resolution) are dropped. A whole render and a tiled
   one then differ in the render's clock alone (date and render times), as
   two whole renders do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

from ._backend import Backend, BlenderBackend
from ._formats import OutputFormat
from ._runner import Limits
from ._stitch import BadStitch, stitch
from ._window import Window

__all__ = ["jpeg_comments", "png_text", "stitch_jpeg", "with_comments"]

MAX_COMMENT = 65533 - len("Blender::")  # a JPEG segment's payload, less Blender's prefix


def png_text(path: Path) -> list[tuple[str, str]]:
    """The text chunks of a PNG (Blender's stamp metadata), in the file's order."""
    from PIL import Image

    with Image.open(path, formats=["PNG"]) as image:
        image.load()  # text chunks after the image data are read with it
        return [(str(k), str(v)) for k, v in getattr(image, "text", {}).items()]


def jpeg_comments(data: bytes) -> list[bytes]:
    """The payloads of a JPEG's COM segments before its image data, in order."""
    return [payload for marker, payload in _segments(data)[0] if marker == 0xFE]


def with_comments(data: bytes, metadata: Sequence[tuple[str, str]]) -> bytes:
    """``data`` (a JPEG) with its COM segments replaced by Blender's for ``metadata``, placed where Blender writes
    them: after the JFIF and APP segments, before the quantisation tables."""
    segments, rest = _segments(data)
    head = [(m, p) for m, p in segments if 0xE0 <= m <= 0xEF]
    tail = [(m, p) for m, p in segments if m != 0xFE and not 0xE0 <= m <= 0xEF]
    comments = []
    for key, value in metadata:
        payload = f"Blender:{key}:{value}".encode()
        if len(payload) <= MAX_COMMENT:
            comments.append((0xFE, payload))
    out = bytearray(b"\xff\xd8")
    for marker, payload in (*head, *comments, *tail):
        out += bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload
    return bytes(out) + rest


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(marker, payload) of each segment up to the start of scan, and the bytes from the start of scan on."""
    if data[:2] != b"\xff\xd8":
        raise BadStitch("not a JPEG")
    at = 2
    segments: list[tuple[int, bytes]] = []
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise BadStitch("JPEG segments are corrupt")
        marker = data[at + 1]
        if marker == 0xDA:  # start of scan: the image data follows
            return segments, data[at:]
        size = int.from_bytes(data[at + 2 : at + 4], "big")
        segments.append((marker, data[at + 4 : at + 2 + size]))
        at += 2 + size
    raise BadStitch("JPEG without image data")


async def stitch_jpeg(
    backend: Backend, tiles: Sequence[tuple[Window, Path]], fmt: OutputFormat, *, width: int, height: int, out: Path, limits: Limits = Limits()
) -> Path:
    """Write the JPEG frame of ``tiles`` (8-bit PNG, rendered in place or cropped) to ``out``: stitched, encoded once by
    ``backend``'s Blender at the format's quality, with the first tile's metadata; renamed into place."""
    if fmt.file_format != "JPEG":
        raise BadStitch(f"{fmt.describe()} is not JPEG")
    if not isinstance(backend, BlenderBackend):
        raise BadStitch(f"{backend!r} has no JPEG writer")
    lossless = OutputFormat(file_format="PNG", color_depth="8", color_mode=fmt.color_mode)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))  # the encoder's sandbox sees this alone
    try:
        png = folder / "stitched.png"
        await trio.to_thread.run_sync(lambda: stitch(tiles, lossless, width=width, height=height, out=png))
        encoded = await backend.encode_jpeg(png, folder / "encoded.jpg", quality=fmt.quality, limits=limits)
        metadata = await trio.to_thread.run_sync(png_text, tiles[0][1])
        final = folder / "final.jpg"
        final.write_bytes(with_comments(encoded.read_bytes(), metadata))
        os.replace(final, out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out
