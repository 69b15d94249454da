"""Reading a .blend file's header without Blender.

A .blend starts with a short ASCII header:

- up to Blender 4.x: b"BLENDER" + pointer size ("_" 4 bytes, "-" 8 bytes) +
  endianness ("v" little, "V" big) + three version digits: b"BLENDER-v304";
- Blender 5.0: b"BLENDER" + header size "17" + "-" + format version "01" +
  endianness + four version digits: b"BLENDER17-01v0500" (pointers are 8 bytes).

Blender 3.0+ may compress the whole file with zstd (5.0 does by default), older
ones with gzip. Both are decompressed just far enough to read the header
(zstd through the `zstandard` bindings until the stdlib has it), so every
.blend tells its version: a file newer than the Blender that would render it
is refused before it reaches Blender, whatever its compression.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Literal

import zstandard
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
    """What a .blend header says."""

    version: tuple[int, int]  # (5, 0)
    pointer_size: int
    little_endian: bool
    compression: Literal["gzip", "zstd"] | None

    @property
    def version_string(self) -> str:
        """The saving Blender's version as "5.0"."""
        return f"{self.version[0]}.{self.version[1]}"


def read_blend_header(path: Path) -> BlendHeader:
    """Parse a .blend header, plain or compressed; raise NotABlendFile for anything else."""
    with open(path, "rb") as file:
        head = file.read(64)
    if head.startswith(ZSTD_MAGIC):
        try:
            with open(path, "rb") as file, zstandard.ZstdDecompressor().stream_reader(file) as reader:
                plain = reader.read(HEADER_BYTES)
        except zstandard.ZstdError as error:
            raise NotABlendFile(f"{path.name} is zstd data that does not decompress: {error}") from None
        return _parse(plain, path, compression="zstd")
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as unzipped:
                plain = unzipped.read(HEADER_BYTES)
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
