"""Reading a .blend file's header without Blender.

A .blend starts with a short ASCII header:

- up to Blender 4.x: b"BLENDER" + pointer size ("_" 4 bytes, "-" 8 bytes) +
  endianness ("v" little, "V" big) + three version digits: b"BLENDER-v304";
- Blender 5.0: b"BLENDER" + header size "17" + "-" + format version "01" +
  endianness + four version digits: b"BLENDER17-01v0500" (pointers are 8 bytes).

Blender 3.0+ may compress the whole file with zstd (5.0 does by default), older
ones with gzip. gzip is in the stdlib; zstd is not (before Python 3.14), but
Blender's zstd frames usually store their first literals raw, and the header has
no repeated 3-byte run a compressor could turn into a match, so the header can
be read straight from the first block. When it cannot, the version is left to
Blender to read.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
from pathlib import Path
from typing import Literal

from attrs import frozen

from ._errors import NotABlendFile

__all__ = ["BlendHeader", "read_blend_header"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OLD_HEADER = re.compile(rb"BLENDER([_-])([vV])(\d{3})")
NEW_HEADER = re.compile(rb"BLENDER(\d\d)-(\d\d)([vV])(\d{4})")
HEADER_BYTES = 17


@frozen(kw_only=True)
class BlendHeader:
    """What a .blend header says; version None when only Blender can read it (zstd)."""

    version: tuple[int, int] | None  # (5, 0); None if the compressed header was unreadable
    pointer_size: int | None
    little_endian: bool | None
    compression: Literal["gzip", "zstd"] | None

    @property
    def version_string(self) -> str:
        """The saving Blender's version as "5.0", or "unknown"."""
        return "unknown" if self.version is None else f"{self.version[0]}.{self.version[1]}"


def read_blend_header(path: Path) -> BlendHeader:
    """Parse a .blend header; raise NotABlendFile for anything else."""
    with open(path, "rb") as file:
        head = file.read(64)
    if head.startswith(ZSTD_MAGIC):
        plain = _zstd_first_bytes(head)
        if plain is None or not plain.startswith(b"BLENDER"):
            return BlendHeader(version=None, pointer_size=None, little_endian=None, compression="zstd")
        return _parse(plain, path, compression="zstd")
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as file:
                plain = file.read(HEADER_BYTES)
        except (OSError, EOFError) as error:
            raise NotABlendFile(f"{path.name} is gzip data that does not decompress: {error}") from None
        return _parse(plain, path, compression="gzip")
    return _parse(head, path, compression=None)


def _parse(head: bytes, path: Path, *, compression: Literal["gzip", "zstd"] | None) -> BlendHeader:
    if match := NEW_HEADER.match(head):
        digits, endian = match.group(4), match.group(3)
        pointer_size = 8
    elif match := OLD_HEADER.match(head):
        digits, endian = match.group(3), match.group(2)
        pointer_size = 4 if match.group(1) == b"_" else 8
    else:
        raise NotABlendFile(f"{path.name} is not a .blend file (it starts with {head[:12]!r})")
    number = int(digits)  # 304 -> 3.4, 0500 -> 5.0
    return BlendHeader(
        version=(number // 100, number % 100),
        pointer_size=pointer_size,
        little_endian=endian == b"v",
        compression=compression,
    )


def _zstd_first_bytes(data: bytes) -> bytes | None:
    """The first decompressed bytes of a zstd frame whose first block starts with raw data.

    Follows RFC 8878: frame header, then the first block; a raw block is its own
    content, and a compressed block whose literals section is raw begins its
    output with those literals. Anything else (Huffman-coded literals) gives None.
    """
    stream = io.BytesIO(data)
    stream.seek(4)
    descriptor = stream.read(1)
    if not descriptor:
        return None
    flags = descriptor[0]
    single_segment = flags >> 5 & 1
    content_size_bytes = {0: single_segment, 1: 2, 2: 4, 3: 8}[flags >> 6]
    dictionary_bytes = {0: 0, 1: 1, 2: 2, 3: 4}[flags & 3]
    stream.seek((0 if single_segment else 1) + dictionary_bytes + content_size_bytes, io.SEEK_CUR)
    block = stream.read(3)
    if len(block) < 3:
        return None
    block_header = int.from_bytes(block, "little")
    block_type, block_size = block_header >> 1 & 3, block_header >> 3
    if block_type == 0:  # raw block
        return stream.read(min(block_size, HEADER_BYTES))
    if block_type != 2:  # RLE or reserved: not a header
        return None
    literals = stream.read(3)
    if len(literals) < 3 or literals[0] & 3 != 0:  # literals not stored raw
        return None
    size_format = literals[0] >> 2 & 3
    header_size = 1 if size_format in (0, 2) else 2 if size_format == 1 else 3
    (size,) = struct.unpack("<I", literals[:header_size].ljust(4, b"\0"))
    size >>= 3 if header_size == 1 else 4
    stream.seek(-3 + header_size, io.SEEK_CUR)
    return stream.read(min(size, HEADER_BYTES))
