"""Final frames to an H.264 video with PyAV (ffmpeg inside the wheel, no system ffmpeg).

Frames are taken in frame-number order, found by the job's own naming pattern
(``frames_in``) or by a glob (``frames_glob``, for frames made elsewhere). PNG and JPEG frames (8 or 16 bits)
are decoded with Pillow. OpenEXR frames are decoded by PyAV's EXR decoder and
hold scene-linear light with no view transform recorded in the file, so they
are tone-mapped with the stated default: Blender's "Standard" view (the sRGB
transfer curve, values clipped to 0..1) at exposure 0. Anything else is
refused by name. H.264 in 4:2:0 needs even sizes: an odd width or height is
padded by repeating the last column or row, and the size is reported.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from attrs import frozen
from PIL import Image

from frender.apps import out_folder

__all__ = ["FRAME_PATTERN", "TONE_MAP", "Video", "VideoError", "assemble", "frames_glob", "frames_in", "read_rgb"]

FRAME_PATTERN = re.compile(r"^frame_(\d+)\.(png|jpg|jpeg|exr)$", re.IGNORECASE)
TONE_MAP = "Standard (sRGB transfer, clipped), exposure 0"


class VideoError(Exception):
    """Frames that cannot become a video: none, mixed sizes, an undecodable format."""


@frozen(kw_only=True)
class Video:
    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int


def frames_in(folder: Path) -> list[Path]:
    """The frames in ``folder``, in frame-number order, found by their names.

    A folder ``frender submit`` or ``frender fetch`` filled names its job's pattern
    in its job file (``long_####``, ``shot_####.exr``, ``take_###``): those are the
    frames. Any other folder: ``frame_####.{png,jpg,exr}``.
    """
    if not folder.is_dir():
        raise VideoError(f"{folder}: no such folder")
    saved = out_folder.read_state(folder)
    try:
        pattern = out_folder.frame_regex(saved.get("name") or "frame_####", saved.get("extension", ".png")) if saved else FRAME_PATTERN
    except ValueError:
        pattern = FRAME_PATTERN
    found = out_folder.numbered(list(folder.iterdir()), pattern)
    if not found:
        job = saved or {}
        named = "frame_####.png, .jpg or .exr" if pattern is FRAME_PATTERN else out_folder.shown(job.get("name") or "frame_####", job.get("extension", ".png"))
        raise VideoError(f"{folder}: no {named} files; for frames named otherwise give --glob, e.g. --glob '{folder}/*.png'")
    return [p for _, p in found]


def frames_glob(pattern: str) -> list[Path]:
    """The files a shell glob names (``render/*.png``), ordered by the last number in each name, then by name."""
    paths = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    if not paths:
        raise VideoError(f"no files match {pattern!r}")

    def order(path: Path) -> tuple[int, int, str]:
        numbers = re.findall(r"-?\d+", path.stem)
        return (0, int(numbers[-1]), path.name) if numbers else (1, 0, path.name)

    return sorted(paths, key=order)


def _srgb(linear: npt.NDArray[np.number[Any]]) -> npt.NDArray[np.uint8]:
    """Scene-linear light to 8-bit sRGB: the Standard view transform."""
    x = np.clip(np.nan_to_num(linear, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (encoded * 255.0 + 0.5).astype(np.uint8)


def _read_exr(path: Path) -> npt.NDArray[np.uint8]:
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            gbr = frame.to_ndarray(format="gbrpf32le")  # H x W x (g, b, r), linear floats
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise VideoError(f"{path.name}: cannot decode this EXR ({exc}); export PNG frames instead") from None
    return _srgb(gbr[..., [2, 0, 1]])


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """One frame as H x W x 3 uint8 RGB."""
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I", "I;16L"):
                array = np.asarray(image, dtype=np.uint32)
                scale = 257 if image.mode.startswith("I;16") or array.max() > 255 else 1
                gray = (array // scale).astype(np.uint8)
                return np.stack([gray] * 3, axis=-1)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:  # Pillow decodes 16-bit RGB PNG to 8 bits in convert()
        raise VideoError(f"{path.name}: cannot decode ({exc})") from None


def _even(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    h, w = pixels.shape[:2]
    return np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def assemble(frames: Sequence[Path] | Iterable[Path], out: Path, *, fps: float | Fraction, crf: int = 18) -> Video:
    """Encode ``frames`` in the order given into H.264 at ``fps``, written atomically to ``out``."""
    paths = list(frames)
    if not paths:
        raise VideoError("no frames to encode")
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    if rate <= 0:
        raise VideoError(f"the frame rate must be positive, not {fps}")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.partial.mp4")
    first = _even(read_rgb(paths[0]))
    height, width = first.shape[:2]
    try:
        with av.open(str(temp), mode="w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for index, path in enumerate(paths):
                pixels = first if index == 0 else _even(read_rgb(path))
                if pixels.shape[:2] != (height, width):
                    raise VideoError(f"{path.name} is {pixels.shape[1]}x{pixels.shape[0]}, the first frame {width}x{height}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        temp.replace(out)
    finally:
        temp.unlink(missing_ok=True)
    return Video(path=out, frames=len(paths), fps=rate, width=width, height=height)
