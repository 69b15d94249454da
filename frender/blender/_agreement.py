"""Agreement classes: which machines render the same pixels, measured rather than guessed from CPU flags.

Cycles' kernels and the denoiser may differ across processors, so friends were
paired by the SIMD level their CPU reports. That pin was never measured, and it
kept most consumer machines away from a requester on an AVX-512 server. Each
node now renders a small calibration (the demo scene at 64x36, 16 samples, one
frame with the denoiser off and one with it on, as 32-bit float OpenEXR) in the
same sandbox its renders use, and hashes the pixels as an 8-bit frame would
hold them (sRGB): machines whose hashes are equal form one agreement class for
that Blender build, and jobs pair friends within it (``RenderProfile.renders``).

Why 8-bit and not the floats: measured here (bench/calibration.py), Cycles'
SSE4.2 and AVX2 kernels differ by at most 7e-6 in linear float (denoiser on;
6e-7 off) and in no pixel at 8 bits; threads change nothing. That is far
inside the comparison's tolerance (4/255, relative for float), so those
machines agree, and a class drawn on exact floats would split them for nothing.
A pixel lying on a rounding boundary may still split two agreeing machines into
two classes: that costs pairings, never a false eviction.

The result is kept per Blender build and processor in the user's cache, so a
machine calibrates once per Blender, not once per process. A class is what a
node says of itself, like the rest of its profile: it only keeps honest friends
of different machines apart; the requester's own checks stay the anchor.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import trio

from ._errors import MissingDenoiser
from ._formats import OutputFormat, decode_output
from ._runner import Limits

if TYPE_CHECKING:
    from ._backend import BlenderBackend

__all__ = ["calibrate", "machine_digest", "srgb8"]

SIZE = (64, 36)
SAMPLES = 16
EXR_FLOAT = OutputFormat(file_format="OPEN_EXR", color_depth="32", color_mode="RGBA")


def srgb8(linear: npt.NDArray[np.number[Any]]) -> npt.NDArray[np.uint8]:
    """Linear float pixels as an 8-bit sRGB frame holds them (colour channels; alpha as it is, scaled)."""
    colour = np.clip(linear[..., :3], 0.0, 1.0)
    encoded = np.where(colour <= 0.0031308, 12.92 * colour, 1.055 * np.power(colour, 1 / 2.4) - 0.055)
    alpha = np.clip(linear[..., 3:], 0.0, 1.0)
    scaled: npt.NDArray[np.floating[Any]] = np.round(255 * np.concatenate([encoded, alpha], axis=-1))
    return scaled.astype(np.uint8)


def machine_digest() -> str:
    """What may change a render on this machine besides Blender: the processor's model and flags."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    first = cpuinfo.split("\n\n", 1)[0]
    keep = [line for line in first.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
    text = "\n".join([platform.machine(), platform.processor(), *keep])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frender" / "agreement"


async def calibrate(backend: BlenderBackend, version: str, build_hash: str) -> str:
    """This machine's agreement class for ``backend``: "cal-" and a digest of its calibration renders' pixels."""
    from ._scene import build_demo_scene

    cached = _cache_dir() / f"{version}-{build_hash}-{backend.device}-{machine_digest()}"
    try:
        return cached.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    denoiser = "denoised"
    with tempfile.TemporaryDirectory(prefix="frender-calibration-") as tmp:
        for denoise in (False, True):
            job = Path(tmp) / f"denoise-{int(denoise)}"
            blend = job / "calibration.blend"
            await trio.to_thread.run_sync(
                lambda: build_demo_scene(blend, frames=2, resolution=SIZE, samples=SAMPLES, denoise=denoise, backend=backend, exr=True)
            )
            try:
                (frame,) = await backend.render(blend, job, [1], threads=None, limits=Limits(wall_seconds=120), on_frame=None)
            except MissingDenoiser:
                denoiser = "no-denoiser"  # a Blender without OpenImageDenoise: its class says so
                continue
            for name, pixels in sorted(decode_output(frame.path, EXR_FLOAT, width=SIZE[0], height=SIZE[1]).items()):
                digest.update(name.encode() + srgb8(pixels).tobytes())
    agreement = f"cal-{digest.hexdigest()[:16]}-{denoiser}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.name + f".{os.getpid()}")
    partial.write_text(agreement)
    partial.replace(cached)
    return agreement
