"""The demo's cheating friends: forged frames, for demos and tests of verification only.

A production friend never loads this module: ``frender run friend`` loads it only
when the hidden ``--cheat`` flag names a cheat (``run_friend(cheat=...)``), and
``frender demo --cheaters`` starts such friends. Each cheat replaces a frame
the friend rendered honestly with a forgery before it is sent:

- "black", "noise": a black frame, or noise;
- "stale": the previous frame's image (a stale-frame cheat);
- "smart": renders what it recognises as a check (a task with a window) honestly, forges the rest black;
- "colluding": a pattern every colluder draws alike for a frame, and a window of it when checking.
"""

from __future__ import annotations

import io
from functools import partial
from typing import Literal

import numpy as np
import trio
from PIL import Image

from frender.apps.messages import CropBox, Work
from frender.blender import RenderedFrame, forge_frame

__all__ = ["CHEATS", "Cheat", "colluders_image"]

CHEATS = ("black", "noise", "stale", "smart", "colluding")


class Cheat:
    """Replaces each honestly rendered frame with a forged one before it is sent.

    A cheat cannot tell test frames from others, so it forges them all. The
    "stale" cheat sends the image of the frame it rendered before; for the
    first frame of a job there is none, so that one goes out as noise (not
    black: a black cheater checking it would agree, as if the two colluded).
    """

    def __init__(self, kind: str) -> None:
        if kind not in CHEATS:
            raise ValueError(f"a cheat is one of {CHEATS}, not {kind!r}")
        self.kind = kind
        self.previous: dict[tuple[int, int], bytes] = {}

    async def forge(self, frame: RenderedFrame, *, width: int, height: int, work: Work | None = None) -> None:
        """Forge ``frame`` (``width`` x ``height``: the task's window when it has one).

        "smart" renders what it recognises as a check (a task with a window) honestly and forges the
        rest black; "colluding" forges a pattern every colluder draws alike for a frame, and renders a
        window of it when checking, so colluders checking each other agree.
        """
        if self.kind == "smart":
            if work is None or work.window is None:
                await trio.to_thread.run_sync(lambda: frame.path.write_bytes(forge_frame("black", width=width, height=height)))
            return
        if self.kind == "colluding":
            box = None if work is None else work.window
            full = (width, height) if work is None else (work.width, work.height)
            await trio.to_thread.run_sync(lambda: frame.path.write_bytes(colluders_image(frame.frame, full, box)))
            return
        honest = frame.path.read_bytes()
        previous = self.previous.get((width, height))  # a crop's stale image is the previous crop of its size
        kind: Literal["black", "noise", "stale"] = "black" if self.kind == "black" else "stale" if self.kind == "stale" and previous is not None else "noise"
        forge = partial(forge_frame, kind, width=width, height=height, other=previous)
        frame.path.write_bytes(await trio.to_thread.run_sync(forge))
        self.previous[(width, height)] = honest


def colluders_image(frame: int, full: tuple[int, int], box: CropBox | None) -> bytes:
    """The forgery every colluder makes of ``frame``: stripes of a colour from the frame number; a window of it."""
    width, height = full
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 0] = (np.arange(width)[None, :] * 7 + frame * 37) % 256
    pixels[..., 1] = (frame * 91) % 256
    pixels[..., 3] = 255
    if box is not None:
        pixels = pixels[box.top : box.top + box.height, box.left : box.left + box.width]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
