"""Reading .blend headers without Blender."""

from __future__ import annotations

import gzip

import pytest

from frender.blender import NotABlendFile, read_blend_header


def raw_zstd_frame(content: bytes) -> bytes:
    """A zstd frame holding content in one raw block (single segment, 1-byte size)."""
    block_header = (len(content) << 3 | 0 << 1 | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, len(content)]) + block_header + content


def huffman_zstd_frame() -> bytes:
    """A compressed block whose literals are Huffman-coded: the header is unreadable."""
    block_header = (40 << 3 | 2 << 1 | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd" + bytes([0x20, 200]) + block_header + b"\x02" + bytes(40)


@pytest.mark.parametrize(
    ("data", "version", "pointer_size", "compression"),
    [
        (b"BLENDER-v304REND", (3, 4), 8, None),
        (b"BLENDER_v279REND", (2, 79), 4, None),
        (b"BLENDER17-01v0500REND", (5, 0), 8, None),
        (gzip.compress(b"BLENDER-v293REND" + bytes(100), mtime=0), (2, 93), 8, "gzip"),
        (raw_zstd_frame(b"BLENDER17-01v0501REND" + bytes(20)), (5, 1), 8, "zstd"),
        (huffman_zstd_frame(), None, None, "zstd"),
    ],
)
def test_reads_header(tmp_path, data, version, pointer_size, compression):
    """Plain, gzip and zstd headers give the saving version, or None when only Blender can tell."""
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


@pytest.mark.blender
def test_bpy_writes_zstd_with_readable_header(demo_scene):
    """bpy 5.0.1 compresses by default, and the header still reads as 5.0."""
    header = read_blend_header(demo_scene)
    assert (header.compression, header.version) == ("zstd", (5, 0))
