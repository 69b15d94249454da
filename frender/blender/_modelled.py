"""A modelled renderer for benchmarks and tests, and forged frames for cheating tests.

`ModelledBackend` has the interface of a real backend: it sleeps a given time
per frame and writes a real PNG of the job's size whose pixels follow from the
frame number, so the same frame always comes out identical and any two frames
disagree. A window of a frame (a crop check) takes the share of a frame's time
that real Blender took (`window_seconds`). `forge_frame` makes the outputs a
cheating friend would send.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import trio
from PIL import Image

from ..core.profile import RenderProfile
from ._backend import Backend, BlendInfo, OnFrame, RenderedFrame, frame_name, window_name
from ._compare import decode_png
from ._errors import RenderTimeout
from ._runner import Limits
from ._window import MIN_RENDER_FRACTION, Window

__all__ = ["WINDOW_STARTUP", "ModelledBackend", "forge_frame", "modelled_frame", "window_seconds"]

# A window's render time against its frame's, measured with real Blender by bench/crop_cost.py
# (bpy 5.0.1, demo scene at 1920x1080, 16 samples, 2 threads, denoiser off): the frame took 55.6 s,
# a window of 6.25% of its area 4.30 s (7.73%). Modelled as a fixed start-up (scene sync, the same
# for any window) plus the window's share of the area: 0.0773 = s + 0.0625 x (1 - s) gives s = 1.58%
# of a frame. At 480x270 the same fit gives 2.7% (the start-up weighs more in a short frame).
WINDOW_STARTUP = 0.0158


def window_seconds(seconds_per_frame: float, area: float, *, startup: float = WINDOW_STARTUP) -> float:
    """What rendering a window of ``area`` (a fraction of the frame) costs, modelled on real Blender's crops."""
    return seconds_per_frame * (startup + (1.0 - startup) * min(max(area, 0.0), 1.0))

MODELLED_PROFILE = RenderProfile(
    blender_version="modelled", build_hash="model", device="CPU", cpu_class="model", gl_backend="MODEL", gl_renderer="model", gl_version="1"
)  # a GL renderer too: the modelled engine is no Cycles, so its jobs pair friends by it


def modelled_frame(frame: int, *, width: int, height: int) -> bytes:
    """The PNG the modelled renderer writes for a frame: smooth ramps shifted by the frame number."""
    y, x = np.mgrid[0:height, 0:width]
    # Each channel moves by a different step per frame, so two frames differ
    # by at least 11/255 on every pixel unless they are 65536 frames apart.
    red = x * 255 // max(width - 1, 1) + frame * 37
    green = y * 255 // max(height - 1, 1) + frame * 101
    blue = (x ^ y) + (frame >> 8) * 67 + frame * 11
    alpha = np.full_like(x, 255)
    pixels = np.stack([red, green, blue, alpha], axis=2) % 256
    return _png(pixels.astype(np.uint8))


def forge_frame(
    kind: Literal["black", "noise", "stale"], *, width: int, height: int, other: Path | bytes | None = None
) -> bytes:
    """A cheat's PNG: all black, random noise, or `other` (another frame's image) re-encoded."""
    if kind == "black":
        pixels = np.zeros((height, width, 4), np.uint8)
        pixels[..., 3] = 255
    elif kind == "noise":
        pixels = np.random.default_rng().integers(0, 256, (height, width, 4), dtype=np.uint8)
        pixels[..., 3] = 255
    elif kind == "stale":
        if other is None:
            raise ValueError("a stale frame needs the other frame's image")
        pixels = decode_png(other, width=width, height=height)
    else:
        raise ValueError(f"unknown kind of forged frame: {kind!r}")
    return _png(pixels)


def _png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


class ModelledBackend(Backend):
    """A renderer that takes `seconds_per_frame` per frame (`window_seconds` of it for a window) and writes modelled frames."""

    def __init__(
        self,
        seconds_per_frame: float,
        *,
        resolution: tuple[int, int] = (160, 90),
        frame_range: tuple[int, int] = (1, 24),
        profile: RenderProfile = MODELLED_PROFILE,
    ) -> None:
        self.seconds_per_frame = seconds_per_frame
        self.resolution = resolution
        self.frame_range = frame_range
        self.profile = profile

    def __repr__(self) -> str:
        return f"ModelledBackend({self.seconds_per_frame!r}, resolution={self.resolution!r})"

    windows_are_frames = True  # a window is cut out of the frame's image

    async def probe(self) -> RenderProfile:
        """The modelled profile; every ModelledBackend with it renders alike."""
        return self.profile

    async def inspect(self, blend: Path, *, limits: Limits = Limits(), job_dir: Path | None = None) -> BlendInfo:
        """The modelled scene's settings; the file itself is not read."""
        return BlendInfo(
            saved_with=self.profile.blender_version,
            scene="Modelled",
            frame_start=self.frame_range[0],
            frame_end=self.frame_range[1],
            frame_step=1,
            fps=24.0,
            resolution=self.resolution,
            engine="MODELLED",
            samples=None,
            denoiser=None,
            external_files=(),
            packed_files=(),
            refusals=(),
        )

    async def render(
        self,
        blend: Path,
        job_dir: Path,
        frames: Sequence[int],
        *,
        threads: int | None = None,
        limits: Limits = Limits(),
        on_frame: OnFrame | None = None,
        window: Window | None = None,
    ) -> list[RenderedFrame]:
        """Sleep per frame and write job_dir/out/frame_####.png (window_####.png, cropped), like a real render."""
        out_dir = job_dir / "out"
        out_dir.mkdir(parents=True, exist_ok=True)
        width, height = self.resolution
        seconds = self.seconds_per_frame
        if window is not None:
            window.check(width, height, min_fraction=MIN_RENDER_FRACTION)
            seconds = window_seconds(seconds, window.width * window.height / (width * height))
        rendered = []
        with trio.move_on_after(limits.wall_seconds):
            # A fixed schedule, like Blender: it renders the next frame while
            # the caller is still handing over the last one.
            begin = trio.current_time()
            for index, frame in enumerate(frames):
                start = trio.current_time()
                await trio.sleep_until(begin + (index + 1) * seconds)
                image = modelled_frame(frame, width=width, height=height)
                if window is None:
                    path = out_dir / frame_name(frame)
                else:
                    path = out_dir / window_name(frame)
                    pixels = decode_png(image, width=width, height=height)
                    if window.in_place:  # the whole frame's image, only the window rendered
                        placed = np.zeros_like(pixels)
                        placed[window.top : window.bottom, window.left : window.right] = window.of(pixels)
                        image = _png(placed)
                    else:
                        image = _png(window.of(pixels).copy())
                path.write_bytes(image)
                done = RenderedFrame(frame=frame, path=path, seconds=trio.current_time() - start, window=window)
                rendered.append(done)
                if on_frame is not None:
                    await on_frame(done)
            return rendered
        raise RenderTimeout(f"modelled render ran past its wall-clock limit of {limits.wall_seconds:g} s")
