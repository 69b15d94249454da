"""Reading .blend headers without Blender."""

from __future__ import annotations

import gzip

import pytest
import zstandard

from frender.blender import NotABlendFile, read_blend_header


def raw_zstd_frame(content: bytes) -> bytes:
    """A zstd frame holding content in one raw block (single segment, 1-byte size)."""
    block_header = (len(content) << 3 | 0 << 1 | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, len(content)]) + block_header + content


def saved_by_blender(header: bytes) -> bytes:
    """A file as Blender compresses it: zstd with Huffman-coded literals over a body that repeats."""
    body = b"".join(b"DATA%08d" % (i % 97) + bytes(i % 13) for i in range(5000))
    return zstandard.ZstdCompressor(level=3).compress(header + b"REND" + body)


@pytest.mark.parametrize(
    ("data", "version", "pointer_size", "compression"),
    [
        (b"BLENDER-v304REND", (3, 4), 8, None),
        (b"BLENDER_v279REND", (2, 79), 4, None),
        (b"BLENDER17-01v0500REND", (5, 0), 8, None),
        (gzip.compress(b"BLENDER-v293REND" + bytes(100), mtime=0), (2, 93), 8, "gzip"),
        (raw_zstd_frame(b"BLENDER17-01v0501REND" + bytes(20)), (5, 1), 8, "zstd"),
        (saved_by_blender(b"BLENDER17-01v0503"), (5, 3), 8, "zstd"),
        (saved_by_blender(b"BLENDER-v402"), (4, 2), 8, "zstd"),
    ],
    ids=["3.4", "2.79-32bit", "5.0", "gzip-2.93", "zstd-raw-5.1", "zstd-5.3", "zstd-4.2"],
)
def test_reads_header(tmp_path, data, version, pointer_size, compression):
    """Plain, gzip and zstd headers give the saving version, however the compressor coded them."""
    path = tmp_path / "x.blend"
    path.write_bytes(data)
    header = read_blend_header(path)
    assert (header.version, header.pointer_size, header.compression) == (version, pointer_size, compression)


@pytest.mark.parametrize("data", [b"", b"hello world, not a scene", b"\x89PNG\r\n\x1a\n" + bytes(30), b"BLENDER-x304"])
def test_not_a_blend(tmp_path, data):
    """Anything without a Blender header is NotABlendFile."""
    path = tmp_path / "x.blend"
    path.write_bytes(data)
    with pytest.raises(NotABlendFile, match="not a .blend file"):
        read_blend_header(path)


def test_zstd_that_does_not_decompress(tmp_path):
    """zstd magic followed by garbage is not a .blend, said plainly."""
    path = tmp_path / "x.blend"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(60)))
    with pytest.raises(NotABlendFile, match="does not decompress"):
        read_blend_header(path)


@pytest.mark.blender
def test_bpy_writes_zstd_with_readable_header(demo_scene):
    """bpy 5.0.1 compresses by default, and the header still reads as 5.0."""
    header = read_blend_header(demo_scene)
    assert (header.compression, header.version) == ("zstd", (5, 0))
