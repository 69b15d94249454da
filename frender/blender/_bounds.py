"""A frame is bounded by its job: its size before it is stored, its bytes before they are decoded.

Rule 1: a frame file is at most ``max_frame_bytes``: the raw pixels of the
        job's size and format (width x height x channels x bytes per channel;
        a multilayer EXR up to ``MAX_PASSES`` passes of four channels) plus a
        margin for the container, compression overhead and metadata. A
        compressed format never needs more than its raw size plus that margin.
Rule 2: nothing follows the image: a PNG ends with its IEND chunk, a JPEG
        with its EOI marker. (TIFF and EXR are bounded by size only: their
        layouts may hold data anywhere, and their decoders read only what
        their headers name.)
Rule 3: a PNG's image data is inflated piece by piece and refused as soon as
        it holds more than the frame's rows need (a decompression bomb), before
        any decoder sees it.
Rule 4: on arrival only the container is checked (``check_frame_container``):
        a PNG's chunks walked to IEND with every chunk's CRC, a JPEG's segments
        to EOI; no pixel is inflated. Rule 3 holds where pixels are decoded
        (``check_frame_bytes``, before every decode), so a frame whose image
        data does not inflate is found where it is compared.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from pathlib import Path

from ._compare import BadImage

__all__ = ["max_frame_bytes", "check_frame_bytes", "check_frame_container", "MAX_PASSES"]

MAX_PASSES = 64  # a multilayer file with more parts than this is refused before decoding
_CHANNELS = {"BW": 1, "RGB": 3, "RGBA": 4}
_MARGIN = 1 << 20  # container, chunk and zlib overhead, metadata (Blender's PNG text chunks are a few hundred bytes)
_PIECE = 1 << 20  # inflated at most this much at a time


def _bytes_per_channel(file_format: str, color_depth: str) -> int:
    if file_format.startswith("OPEN_EXR"):
        return 2 if color_depth == "16" else 4
    return 2 if color_depth == "16" else 1


def max_frame_bytes(file_format: str, color_depth: str, color_mode: str, width: int, height: int) -> int:
    """The most bytes an honest frame of this format and size can take (Rule 1)."""
    channels = _CHANNELS.get(color_mode, 4)
    if file_format == "OPEN_EXR_MULTILAYER":
        channels = 4 * MAX_PASSES
    raw = width * height * channels * _bytes_per_channel(file_format, color_depth)
    return raw + raw // 8 + _MARGIN


def check_frame_bytes(path: Path, file_format: str, width: int, height: int) -> None:
    """Rules 2 and 3 for the file at ``path``; BadImage says what is wrong. Its width and height are already checked."""
    _check(path, file_format, width, height, inflate=True)


def check_frame_container(path: Path, file_format: str, width: int, height: int) -> None:
    """Rules 2 and 4 for the file at ``path``: its container whole (a PNG's chunk CRCs too), no pixel inflated."""
    _check(path, file_format, width, height, inflate=False)


def _check(path: Path, file_format: str, width: int, height: int, *, inflate: bool) -> None:
    with open(path, "rb") as file:
        if file.seek(0, 2) == 0:
            raise BadImage("the frame file is empty")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if file_format == "PNG":
                _check_png(data, width, height, inflate=inflate)
            elif file_format == "JPEG":
                _check_jpeg(data)


def _check_png(data: mmap.mmap, width: int, height: int, *, inflate: bool) -> None:
    """Chunks walked to IEND, which must end the file, each with its CRC (about a millisecond for a 1080p frame);
    with ``inflate``, IDAT inflated no further than the frame's rows (thirty milliseconds more)."""
    at, size = 8, len(data)
    view = memoryview(data)
    try:
        _walk_png(data, view, at, size, width, height, inflate=inflate)
    finally:
        view.release()


def _walk_png(data: mmap.mmap, view: memoryview, at: int, size: int, width: int, height: int, *, inflate: bool) -> None:
    ihdr = b""
    inflater = zlib.decompressobj()
    inflated = 0
    limit = 0
    seen_data = False
    while True:
        if at + 12 > size:
            raise BadImage("PNG ends before its IEND chunk")
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind = data[at + 4:at + 8]
        end = at + 12 + length
        if end > size:
            raise BadImage(f"PNG chunk {kind!r} runs past the end of the file")
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(view[at + 4:end - 4]) != crc:
            raise BadImage(f"PNG chunk {kind!r} fails its CRC: the file is corrupt")
        if kind == b"IHDR":
            ihdr = data[at + 8:at + 8 + length]
            if len(ihdr) != 13:
                raise BadImage("PNG header chunk is malformed")
            bit_depth, colour_type = ihdr[8], ihdr[9]
            samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type)
            if samples is None or bit_depth not in (1, 2, 4, 8, 16) or ihdr[12] not in (0, 1):
                raise BadImage("PNG header names an unknown colour type, depth or interlace")
            row = (width * samples * bit_depth + 7) // 8 + 1  # a filter byte per row
            limit = row * height * (2 if ihdr[12] == 1 else 1)  # interlaced: seven passes, under twice the rows
        elif kind == b"IDAT":
            if not ihdr:
                raise BadImage("PNG image data before its header")
            seen_data = True
            if inflate:
                inflated = _inflate(inflater, data[at + 8:at + 8 + length], inflated, limit)
        elif kind == b"IEND":
            if not seen_data:
                raise BadImage("PNG holds no image data")
            if end != size:
                raise BadImage(f"{size - end} bytes follow the PNG's IEND chunk: a frame is the image and nothing more")
            return
        at = end


def _inflate(inflater: zlib._Decompress, chunk: bytes, inflated: int, limit: int) -> int:
    """Feed one IDAT chunk; refuse once the image data passes ``limit`` bytes (the frame's rows)."""
    pending = chunk
    while pending:
        try:
            out = inflater.decompress(pending, _PIECE)
        except zlib.error as error:
            raise BadImage(f"PNG image data does not inflate: {error}") from None
        inflated += len(out)
        if inflated > limit:
            raise BadImage(f"PNG image data inflates past the {limit} bytes of its frame (a decompression bomb)")
        pending = inflater.unconsumed_tail
        if not out and not pending:
            break
    return inflated


def _check_jpeg(data: mmap.mmap) -> None:
    """Segments walked to EOI, which must end the file."""
    at, size = 2, len(data)
    while at + 2 <= size:
        if data[at] != 0xFF:
            raise BadImage("JPEG segments are corrupt")
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker == 0xD9:  # EOI
            if at + 2 != size:
                raise BadImage(f"{size - at - 2} bytes follow the JPEG's end marker: a frame is the image and nothing more")
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > size:
            break
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker that is not a stuffed byte or restart
            while True:
                at = data.find(b"\xff", at)
                if at < 0 or at + 1 >= size:
                    raise BadImage("JPEG ends before its end marker")
                follower = data[at + 1]
                if follower != 0x00 and follower != 0xFF and not 0xD0 <= follower <= 0xD7:
                    break
                at += 1
    raise BadImage("JPEG ends before its end marker")
