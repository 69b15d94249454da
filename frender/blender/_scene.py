"""The bundled demo scene, built by Blender in a subprocess from `_inblender.py`.

The caller's process never imports bpy (it is large and owns global state);
the scene is built by whichever backend will render it, so a Blender 3.4 CLI
gets a file it can open. Building is synchronous (a plain subprocess) so the
CLI and session-wide test fixtures can call it outside trio.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ._backend import BlenderBackend, find_backend
from ._errors import BlenderCrashed
from ._runner import TAIL_LINES, staged_script

__all__ = ["build_demo_scene", "parse_resolution", "scene_command"]


def build_demo_scene(
    out: Path,
    *,
    frames: int = 24,
    resolution: tuple[int, int] = (160, 90),
    samples: int = 16,
    denoise: bool = False,
    backend: BlenderBackend | None = None,
    exr: bool = False,
) -> Path:
    """Save the demo scene to `out`: Cycles CPU, every frame different, the denoiser off unless `denoise`;
    PNG frames, or 32-bit float OpenEXR with `exr`."""
    if frames < 1 or min(resolution) < 1 or samples < 1:
        raise ValueError("frames, resolution and samples must be positive")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    backend = backend or find_backend()
    request = {"mode": "scene", "nonce": "scene", "out": str(out), "frames": frames,
               "resolution": list(resolution), "samples": samples, "denoise": denoise, "exr": exr}  # fmt: skip
    # Our own script and no untrusted file: no sandbox needed.
    with staged_script() as (_, script, env):
        command = backend.command(str(script), json.dumps(request))
        result = subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not out.is_file():
        tail = (result.stdout + result.stderr).splitlines()[-TAIL_LINES:]
        raise BlenderCrashed(f"Blender could not build the demo scene (status {result.returncode})", tail)
    return out


def parse_resolution(text: str) -> tuple[int, int]:
    """Parse "160x90" into (160, 90)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"resolution must look like 160x90, not {text!r}")
    return int(width), int(height)


def scene_command(
    out: Path, frames: int = 24, resolution: str = "160x90", samples: int = 16, blender: str | None = None
) -> Path:
    """`frender scene OUT.blend [--frames N] [--resolution WxH] [--samples S] [--blender PATH]`."""
    backend = find_backend(blender)
    return build_demo_scene(out, frames=frames, resolution=parse_resolution(resolution), samples=samples, backend=backend)
