"""A denoised still in tiles: the tiles rendered noisy, stitched, denoised once.

Rules (measured: docs/performance.md, "A denoised still in tiles"):

1. A tile denoised alone sees its own edges: tiles of a frame with Cycles'
   denoiser on are rendered noisy instead, with the denoising passes (albedo,
   normal) stored, as multilayer half-float OpenEXR (``NOISY_TILES``,
   ``_inblender.render_noisy``: 2.5 times smaller than float at 480x270; the
   frame denoised from half tiles differs from one denoised from float tiles
   by at most 1/255, in 2.5% of its pixels). Without the denoiser a Cycles pixel depends
   only on its own samples, so those tiles are exact: they stitch into exactly
   the whole noisy frame, and checks compare them as any other float frame.
2. The stitched frame is denoised once (``denoise_frame``) by Cycles' file
   denoiser (Render > Denoise Animation's) with the file's own settings, then
   written in the file's own output format. It is, pixel for pixel, the whole
   noisy frame denoised the same way: no seam. It is not the in-render
   denoiser's exact pixels (a few percent of pixels off by more than 2/255),
   which is why nothing after this step is checked against a friend's render.
3. Blender 5 writes each pass of a multilayer file as a part of its own, and
   its file denoiser reads a file's first part alone and asks for a Vector
   pass (for the frames after the first of an animation: a still's is never
   read): the stitched file is rewritten into one part with a zero Vector pass
   (``one_part``) before it is denoised.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ._backend import Backend
from ._formats import OutputFormat
from ._runner import Limits

__all__ = ["NOISY_TILES", "denoise_frame", "one_part"]

NOISY_TILES = OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="16", color_mode="RGBA")


def one_part(exr: Path, out: Path) -> Path:
    """Rewrite the multilayer EXR ``exr`` into ``out`` as Cycles' file denoiser reads it: every channel of every part in
    one part, and a zero Vector pass beside each layer's Combined where it has none (Rule 3)."""
    import OpenEXR

    channels: dict[str, Any] = {}
    with OpenEXR.File(str(exr), separate_channels=True) as source:
        skip = ("channels", "chunkCount", "type", "name", "version")
        header = {k: v for k, v in source.parts[0].header.items() if k not in skip}
        for part in source.parts:
            channels.update({name: OpenEXR.Channel(np.ascontiguousarray(c.pixels)) for name, c in part.channels.items()})
    for name in [n for n in channels if n.endswith(".Combined.R")]:
        layer = name.removesuffix(".Combined.R")
        for axis in "XYZW":
            channels.setdefault(f"{layer}.Vector.{axis}", OpenEXR.Channel(np.zeros_like(channels[name].pixels)))
    with OpenEXR.File(header, channels) as target:
        target.write(str(out))
    return out


async def denoise_frame(backend: Backend, blend: Path, stitched: Path, work: Path, out: Path, *, limits: Limits) -> Path:
    """Denoise the stitched noisy frame ``stitched`` once with ``blend``'s settings and write it to ``out`` in the file's
    own format (Rule 2); ``work`` is a scratch folder holding ``blend`` (Blender runs sandboxed in it), emptied after."""
    noisy = work / ".denoise-input.exr"  # names of its own: never the caller's ``stitched`` or ``out``
    written = work / f".denoise-output{out.suffix}"
    if {stitched.resolve(), out.resolve()} & {noisy.resolve(), written.resolve()}:
        raise ValueError(f"{stitched.name} and {out.name} must not be the scratch files {noisy.name}, {written.name}")
    await trio.to_thread.run_sync(one_part, stitched, noisy)
    try:
        await backend.denoise(blend, work, noisy, written, limits=limits)
        os.replace(written, out)
    finally:
        noisy.unlink(missing_ok=True)
        written.unlink(missing_ok=True)
        shutil.rmtree(work / "out", ignore_errors=True)
    return out
