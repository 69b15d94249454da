#!/usr/bin/env bash
# On a machine with a GPU: does Cycles on it agree with itself, and how far is it from the CPU?
# Renders the demo scene (480x270, 64 samples, denoiser off and on) twice on the GPU and once on the CPU,
# through fRender's own backend (sandboxed, as a friend renders), and prints the agreement figures and each
# device's calibration class. Usage: bash scripts/gpu_check.sh [CUDA|OPTIX|HIP|ONEAPI|METAL]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
"$PY" -m pip install -q --disable-pip-version-check -e '.[bpy]'
exec "$PY" - "${1:-}" <<'PYTHON'
import sys
import tempfile
from pathlib import Path

import trio

from frender import blender

SIZE = (480, 270)


async def on(device: str) -> blender.BlenderBackend:
    backend = blender.find_backend(device=device)
    await backend.probe()  # BlenderNotFound when Cycles finds no such device here
    return backend


async def gpu(wanted: str) -> blender.BlenderBackend:
    for kind in [wanted] if wanted else ["OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"]:
        try:
            return await on(kind)
        except blender.BlenderNotFound as exc:
            print(exc)
    sys.exit("no GPU device found by Cycles here")


async def main() -> None:
    backends = {"gpu1": await gpu(sys.argv[1]), "cpu": await on("CPU")}
    backends["gpu2"] = backends["gpu1"]
    for name, backend in backends.items():
        print(f"{name}: {await backend.probe()}")
    with tempfile.TemporaryDirectory() as tmp:
        for denoise in (False, True):
            scene = blender.build_demo_scene(Path(tmp) / f"s{denoise}.blend", frames=2, resolution=SIZE, samples=64, denoise=denoise)
            renders = {}
            for run, backend in backends.items():
                job = Path(tmp) / f"{run}-{denoise}"
                job.mkdir()
                (job / "scene.blend").write_bytes(scene.read_bytes())
                [frame] = await blender.render(backend, job / "scene.blend", job, [1])
                renders[run] = frame.path
            for a, b in (("gpu1", "gpu2"), ("gpu1", "cpu")):
                c = blender.compare(renders[a], renders[b], width=SIZE[0], height=SIZE[1])
                print(f"denoise={denoise!s:<5} {a} vs {b}: {c.verdict}, {c.fraction_off:.4%} of pixels over 4/255,"
                      f" max {c.max_diff}/255, PSNR {c.psnr:.1f} dB")


trio.run(main)
PYTHON
