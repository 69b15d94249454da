"""What an artist asks for, checked without Blender: frame specs, ranges, outputs, names, manifests."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frender import blender
from frender.apps import artist, pack

INFO = blender.BlendInfo(
    saved_with="5.0.1", scene="Scene", frame_start=10, frame_end=20, frame_step=2, fps=24.0, resolution=(64, 36), engine="CYCLES",
    samples=4, denoiser=None, external_files=(), packed_files=(), refusals=(),
    output={"media_type": "IMAGE", "file_format": "OPEN_EXR", "color_depth": "32", "color_mode": "RGBA", "name": "shot_####.exr",
            "use_file_extension": True},
)  # fmt: skip


def test_frames_are_read_as_blender_writes_them():
    """A, A-B, A-BxS and comma lists, in the order given, each frame once."""
    assert artist.parse_frames("7") == (7,)
    assert artist.parse_frames("10-20x2") == (10, 12, 14, 16, 18, 20)
    assert artist.parse_frames("1,5,10-12") == (1, 5, 10, 11, 12)
    assert artist.parse_frames("3, 1-4") == (3, 1, 2, 4)
    assert artist.parse_frames("-2--1") == (-2, -1)
    for bad in ("", "a", "5-1", "1-5x0", "1-5x", "1,,2", "1-2-3"):
        with pytest.raises(ValueError):
            artist.parse_frames(bad)


@given(st.integers(-1000, 1000), st.integers(0, 50), st.integers(1, 9))
def test_a_range_with_a_step_is_pythons_range(first, length, step):
    """A-BxS is exactly range(A, B + 1, S)."""
    assert artist.parse_frames(f"{first}-{first + length}x{step}") == tuple(range(first, first + length + 1, step))


def test_a_request_is_checked_against_its_file():
    """The default is the file's range and step; frames outside need allow_outside; the format and name come from the file."""
    accepted = artist.check_request(INFO, (), allow_outside=False, allow_missing=False)
    assert accepted.frames == (10, 12, 14, 16, 18, 20)
    assert accepted.output.precision == "float" and accepted.extension == ".exr" and accepted.name == "shot_####.exr"
    assert artist.frame_file(accepted.name, 12, accepted.extension) == "shot_0012.exr"
    with pytest.raises(artist.RequestRefused, match="frames 9, 21 lie outside the file's range 10-20") as refused:
        artist.check_request(INFO, (9, 10, 21), allow_outside=False, allow_missing=False)
    assert refused.value.code == "outside-range"
    with pytest.raises(artist.RequestRefused, match="frame 0 lies outside the file's range 10-20"):  # one frame: singular
        artist.check_request(INFO, (0,), allow_outside=False, allow_missing=False)
    assert artist.check_request(INFO, (9, 21), allow_outside=True, allow_missing=False).frames == (9, 21)


def test_missing_files_videos_and_odd_names():
    """Missing files are named with their users; a video output is refused; a name that is not plain falls back."""
    missing = attrs.evolve(INFO, missing=(("//tex/a.png", "image 'a'"), ("//lib.blend", "library 'lib.blend'")))
    with pytest.raises(artist.RequestRefused, match=r"//tex/a.png \(used by image 'a'\); //lib.blend \(used by library 'lib.blend'\)"):
        artist.check_request(missing, (), allow_outside=False, allow_missing=False)
    assert artist.check_request(missing, (), allow_outside=False, allow_missing=True).frames
    video = attrs.evolve(INFO, output={**INFO.output, "media_type": "VIDEO", "file_format": "FFMPEG"})
    with pytest.raises(artist.RequestRefused, match="video"):
        artist.check_request(video, (), allow_outside=False, allow_missing=False)
    for name in ("../x_####", ".hidden_##", "a/b_##", "", "x" * 300):
        odd = attrs.evolve(INFO, output={**INFO.output, "name": name})
        assert artist.check_request(odd, (), allow_outside=False, allow_missing=False).name == "frame_####"
    no_extension = attrs.evolve(INFO, output={**INFO.output, "use_file_extension": False, "name": "plate_"})
    accepted = artist.check_request(no_extension, (), allow_outside=False, allow_missing=False)
    assert artist.frame_file(accepted.name, 10, accepted.extension) == "plate_0010"


def test_manifests_from_peers_are_checked():
    """A manifest with a path escaping the tree, a duplicate, a file-and-folder or no main .blend is refused."""
    sha = "a" * 64
    good = pack.Manifest(main="shots/a.blend", files=(pack.TreeFile(path="shots/a.blend", sha256=sha, size=1),))
    assert pack.read_manifest(good.encode()) == good
    bad_trees = [
        [["../a.blend", sha, 1]],
        [["/etc/a.blend", sha, 1]],
        [["shots/./a.blend", sha, 1]],
        [["c:/a.blend", sha, 1]],
        [["shots/a.blend", sha, 1], ["Shots/A.blend", sha, 1]],
        [["shots/a.blend", sha, 1], ["shots", sha, 1]],
        [["shots/a.blend", "nothex", 1]],
    ]
    for files in bad_trees:
        data = pack.MAGIC + b', "main": "shots/a.blend", "files": ' + repr(files).replace("'", '"').encode() + b"}"
        with pytest.raises(ValueError):
            pack.read_manifest(data)
    with pytest.raises(ValueError):
        pack.read_manifest(pack.Manifest(main="tex.png", files=(pack.TreeFile(path="tex.png", sha256=sha, size=1),)).encode())
    assert not pack.is_manifest(b"BLENDER17-01v0500")


def test_upload_progress_shows_bytes_rate_and_time_left():
    """The live upload line names the bytes sent of the total, the rate and the time left, mid-file included."""
    from frender.apps.client import UploadProgress

    mid_file = UploadProgress(sent=50_000_000, total=214_000_000, seconds=2.0, files_sent=0, files_total=3, files_held=1)
    assert mid_file.rate == 25_000_000 and mid_file.seconds_left == pytest.approx(6.56)
    assert mid_file.text() == "uploaded 50.0 of 214.0 MB at 25.0 MB/s, 7 s left (0 of 3 files; 1 already held)"
    assert "left" not in UploadProgress(sent=0, total=10, seconds=0.0, files_sent=0, files_total=1, files_held=0).text()
