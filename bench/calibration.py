"""Does a machine's agreement class depend on how it renders? The calibration's pixels under each variant.

A node's agreement class is the digest of its calibration renders (frender/blender/_agreement.py: the demo
scene at 64x36, 16 samples, 32-bit float EXR, the denoiser off and on). Friends are paired by it, so it must
not change with what varies between honest friends of one machine kind: render threads, and the Cycles CPU
kernel the processor picks (SSE4.2 or AVX2; forced here with Cycles' own switches, the environment variables
CYCLES_CPU_NO_AVX2 and CYCLES_CPU_NO_SSE42 that Cycles reads at start-up). Each variant renders the calibration
frame and its pixels are hashed; the table says which variants agree with the default, and how far apart
the pixels of those that do not are (largest difference in linear float, and pixels whose 8-bit value after
the sRGB transform would differ).

    python bench/calibration.py            # writes bench/calibration.json; the table is in docs/verification.md
    python bench/calibration.py --blender 4.2   # a Blender added with `frender blender add`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender import blender  # noqa: E402
from frender.blender._agreement import EXR_FLOAT, SAMPLES, SIZE, machine_digest, srgb8  # noqa: E402

VARIANTS: dict[str, tuple[dict, dict[str, str]]] = {  # name: (render settings, environment)
    "default": ({}, {}),
    "1 thread": ({"threads": 1}, {}),
    "2 threads": ({"threads": 2}, {}),
    "AVX2 kernel off (SSE4.2)": ({}, {"CYCLES_CPU_NO_AVX2": "1"}),
    "AVX2 and SSE4.2 kernels off": ({}, {"CYCLES_CPU_NO_AVX2": "1", "CYCLES_CPU_NO_SSE42": "1", "CYCLES_CPU_NO_SSE41": "1"}),
}

RENDER = """
import bpy, json, sys
args = json.loads(sys.argv[sys.argv.index("--") + 1])
bpy.ops.wm.open_mainfile(filepath=args["blend"])
scene = bpy.context.scene
if "threads" in args:
    scene.render.threads_mode = "FIXED"
    scene.render.threads = args["threads"]
scene.frame_set(1)
scene.render.filepath = args["out"]
bpy.ops.render.render(write_still=True)
"""


def render(backend: blender.BpyBackend, blend: Path, out: Path, settings: dict, env: dict[str, str]) -> np.ndarray:
    """Frame 1 of ``blend`` rendered under ``settings`` and ``env``: its float pixels."""
    command = [str(backend.python), "-E", "-c", RENDER, "--", json.dumps({"blend": str(blend), "out": str(out), **settings})]
    subprocess.run(command, check=True, capture_output=True, timeout=600, env={**os.environ, **env})
    return blender.decode_output(out, EXR_FLOAT, width=SIZE[0], height=SIZE[1])[""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blender", default="5.0", help="a held Blender version (frender blender list)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("calibration.json"))
    args = parser.parse_args()
    [backend] = blender.held_runtimes([args.blender])
    assert isinstance(backend, blender.BpyBackend), "the calibration bench drives bpy directly"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for denoise in (False, True):
            blend = blender.build_demo_scene(Path(tmp) / f"cal-{denoise}.blend", frames=2, resolution=SIZE, samples=SAMPLES,
                                             denoise=denoise, backend=backend, exr=True)  # fmt: skip
            pixels = {name: render(backend, blend, Path(tmp) / f"{denoise}-{i}.exr", *v) for i, (name, v) in enumerate(VARIANTS.items())}
            base = pixels["default"]
            for name, p in pixels.items():
                agrees = p.tobytes() == base.tobytes()
                row = {"denoise": denoise, "variant": name, "digest": hashlib.sha256(p.tobytes()).hexdigest()[:16], "agrees": agrees,
                       "max_float_diff": float(np.abs(p - base).max()),
                       "pixels_off_8bit": float(np.mean(np.any(srgb8(p) != srgb8(base), axis=-1))),
                       "max_8bit_diff": int(np.abs(srgb8(p).astype(np.int16) - srgb8(base)).max())}  # fmt: skip
                rows.append(row)
                print(f"denoise={denoise!s:<5} {name:<30} {'agrees' if agrees else 'DIFFERS'} max {row['max_float_diff']:.2e}"
                      f" 8-bit: {row['pixels_off_8bit']:.1%} of pixels, max {row['max_8bit_diff']}/255")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    result = {"blender": args.blender, "machine": platform.machine(), "cpu": cpu, "cpu_class": blender.cpu_class(),
              "machine_digest": machine_digest(), "rows": rows}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
