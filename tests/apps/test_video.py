"""Frames to H.264 with PyAV, decoded back: frame count, rate, size, order, EXR tone mapping, clear refusals."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from frender.apps.cli import app
from frender.apps.video import VideoError, assemble, frames_in, read_rgb


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate, stream.codec_context.name


def _pngs(folder, count, size=(64, 36)):
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):  # frame n is a flat grey of 20 n: order is visible after decoding
        Image.fromarray(np.full((size[1], size[0], 3), 20 * n, np.uint8)).save(folder / f"frame_{n:04d}.png")


def _exr(path, rgb: np.ndarray) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("exr", rate=1)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "gbrpf32le"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[..., [1, 2, 0]]), format="gbrpf32le")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_the_video_has_every_frame_in_order_at_the_rate_and_size(tmp_path):
    """Ten PNG frames at 25 fps decode back as ten H.264 frames of that size and rate, in frame order."""
    _pngs(tmp_path / "frames", 10)
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    made = assemble(frames_in(tmp_path / "frames"), tmp_path / "out.mp4", fps=25)
    frames, rate, codec = _decode(tmp_path / "out.mp4")
    assert (made.frames, len(frames), rate, codec) == (10, 10, 25, "h264")
    assert frames[0].shape == (36, 64, 3)
    greys = [int(f.mean()) for f in frames]
    assert all(abs(g - 20 * (i + 1)) <= 3 for i, g in enumerate(greys)), greys


def test_fractional_rates_and_odd_sizes(tmp_path):
    """29.97 fps is kept exactly as 30000/1001; an odd 63x35 frame is padded to 64x36."""
    _pngs(tmp_path / "frames", 3, size=(63, 35))
    made = assemble(frames_in(tmp_path / "frames"), tmp_path / "out.mp4", fps=30000 / 1001)
    frames, rate, _ = _decode(tmp_path / "out.mp4")
    assert made.fps == Fraction(30000, 1001) and rate == Fraction(30000, 1001)
    assert (made.width, made.height) == (64, 36) and frames[0].shape == (36, 64, 3)


def test_exr_frames_get_the_standard_view(tmp_path):
    """Linear EXR values become sRGB: 0.5 -> 188, 0.2 -> 124, above 1 clipped to 255."""
    rgb = np.zeros((4, 6, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.5, 0.2, 4.0
    _exr(tmp_path / "frame_0001.exr", rgb)
    assert read_rgb(tmp_path / "frame_0001.exr")[0, 0].tolist() == [188, 124, 255]
    made = assemble([tmp_path / "frame_0001.exr"], tmp_path / "out.mp4", fps=24)
    assert made.frames == 1 and _decode(tmp_path / "out.mp4")[0][0].shape == (4, 6, 3)


def test_what_cannot_become_a_video_is_refused_by_name(tmp_path):
    """No frames, a corrupt frame, a frame of another size: VideoError naming it, and no video left behind."""
    with pytest.raises(VideoError, match="no frame_"):
        frames_in(tmp_path)
    _pngs(tmp_path / "frames", 2)
    (tmp_path / "frames" / "frame_0003.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match="frame_0003.png"):
        assemble(frames_in(tmp_path / "frames"), tmp_path / "out.mp4", fps=24)
    Image.new("RGB", (32, 18)).save(tmp_path / "frames" / "frame_0003.png")
    with pytest.raises(VideoError, match="frame_0003.png is 32x18"):
        assemble(frames_in(tmp_path / "frames"), tmp_path / "out.mp4", fps=24)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*mp4"))


def test_frender_video_uses_the_rate_submit_remembered(tmp_path):
    """`frender video OUT --from DIR` takes the .blend's rate from DIR's job file, or --fps; without either it says so."""
    _pngs(tmp_path / "frames", 4)
    runner = CliRunner()
    result = runner.invoke(app, ["video", str(tmp_path / "a.mp4"), "--from", str(tmp_path / "frames")])
    assert result.exit_code == 1 and "--fps" in result.output
    (tmp_path / "frames" / ".frender-job.json").write_text(json.dumps({"job": 1, "sha256": "x", "requester": "y", "fps": 12.0}))
    result = runner.invoke(app, ["video", str(tmp_path / "a.mp4"), "--from", str(tmp_path / "frames")])
    assert result.exit_code == 0, result.output
    assert "4 frames" in result.output and _decode(tmp_path / "a.mp4")[1] == 12
    result = runner.invoke(app, ["video", str(tmp_path / "b.mp4"), "--from", str(tmp_path / "frames"), "--fps", "50"])
    assert result.exit_code == 0 and _decode(tmp_path / "b.mp4")[1] == 50


@pytest.mark.parametrize(
    ("name", "extension", "first"),
    [("long_", ".png", "long_0001.png"), ("shot_####", ".exr", "shot_0001.exr"), ("take_###", ".png", "take_001.png")],
)
def test_frender_video_finds_frames_by_the_jobs_own_names(tmp_path, name, extension, first):
    """`frender video --from DIR` takes the frames named as DIR's job names them (the file's output path or --name), in order."""
    folder = tmp_path / "shot"
    _pngs(tmp_path / "src", 3)
    folder.mkdir()
    for n in range(1, 4):
        target = folder / first.replace("1" + extension, f"{n}{extension}")
        if extension == ".exr":
            _exr(target, np.full((36, 64, 3), 0.1 * n, np.float32))
        else:
            (tmp_path / "src" / f"frame_{n:04d}.png").rename(target)
    assert (folder / first).is_file()
    (folder / "notes_0009.png").write_bytes(b"not a frame of the job")  # another name: not taken
    (folder / ".frender-job.json").write_text(json.dumps({"job": 3, "sha256": "x", "requester": "y", "name": name, "extension": extension, "fps": 24.0}))
    result = CliRunner().invoke(app, ["video", str(tmp_path / "a.mp4"), "--from", str(folder)])
    assert result.exit_code == 0, result.output
    frames = _decode(tmp_path / "a.mp4")[0]
    assert len(frames) == 3 and frames[0].mean() < frames[1].mean() < frames[2].mean()


def test_frender_video_takes_a_glob_and_names_a_missing_folder(tmp_path):
    """--glob takes frames made elsewhere in the order of their numbers; a --from folder that does not exist is said as such."""
    folder = tmp_path / "render"
    _pngs(folder, 3)
    for n in (1, 2, 3):  # render9.png must come before render10.png: numbers, not text order
        (folder / f"frame_{n:04d}.png").rename(folder / f"render{n + 8}.png")
    runner = CliRunner()
    result = runner.invoke(app, ["video", str(tmp_path / "a.mp4"), "--glob", str(folder / "*.png"), "--fps", "10"])
    assert result.exit_code == 0, result.output
    frames, rate, _ = _decode(tmp_path / "a.mp4")
    assert rate == 10 and len(frames) == 3 and frames[0].mean() < frames[1].mean() < frames[2].mean()
    result = runner.invoke(app, ["video", str(tmp_path / "b.mp4"), "--from", str(tmp_path / "nosuch")])
    assert result.exit_code == 1 and "nosuch: no such folder" in result.output and "--fps" not in result.output
    result = runner.invoke(app, ["video", str(tmp_path / "b.mp4"), "--glob", str(tmp_path / "none*.png"), "--fps", "10"])
    assert result.exit_code == 1 and "no files match" in result.output
