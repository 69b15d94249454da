"""What a crop check costs a friend, against the full frame, by frame size (real Blender).

A crop check renders a window of 1/16 of the frame's area (a quarter of each
side). Without the denoiser the window is rendered as it is; with the
denoiser it is padded by 16 pixels and its edges aligned to the denoiser's
16-pixel grid (docs/verification.md). Padding is a fixed number of pixels, so
its share of the cost falls as frames grow: this bench renders the demo
scene at several sizes, the denoiser off and on, in one open render session
(as a friend renders its checks), and times the full frame and the window as
the requester would send it, each after one warm-up render, the minimum of
`--repeats`.

    python bench/crop_cost.py                         # 480x270, 960x540, 1920x1080
    python bench/crop_cost.py --sizes 480x270 --repeats 2

Writes bench/results.json key "crop_cost": per size and denoiser, the seconds of
a full frame and a window, the window's area and its cost as a fraction of a frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _record  # noqa: E402

from frender import blender  # noqa: E402
from frender.blender import Window  # noqa: E402

LIMITS = blender.Limits(wall_seconds=7200.0, memory_bytes=None)


def crop_box(width: int, height: int, denoise: bool) -> Window:
    """A central window of 1/16 of the frame, as the requester renders it for a file with or without the denoiser."""
    w, h = -(-width // 4), -(-height // 4)
    box = Window(left=(width - w) // 2, top=(height - h) // 2, width=w, height=h)
    return blender.crop_region(box, width, height, denoised=denoise)


async def measure(width: int, height: int, denoise: bool, samples: int, threads: int, repeats: int, work: Path) -> dict[str, Any]:
    backend = blender.BpyBackend()
    job = work / f"{width}x{height}-{'dn' if denoise else 'raw'}"
    job.mkdir(parents=True, exist_ok=True)
    blend = blender.build_demo_scene(job / "scene.blend", frames=4, resolution=(width, height), samples=samples,
                                     denoise=denoise, backend=backend)
    region = crop_box(width, height, denoise)
    full: list[float] = []
    crop: list[float] = []
    t0 = time.perf_counter()
    async with blender.open_session(backend, blend, job, threads=threads, limits=LIMITS) as session:
        start = time.perf_counter() - t0
        await session.render([1], window=region)  # warm-up: the first render pays for kernels and caches
        for _ in range(repeats):
            full.append((await session.render([1]))[0].seconds)
            crop.append((await session.render([1], window=region))[0].seconds)
    return {
        "size": f"{width}x{height}", "denoise": denoise, "samples": samples, "threads": threads,
        "full_s": round(min(full), 3), "crop_s": round(min(crop), 3),
        "crop_area": round(region.width * region.height / (width * height), 4),
        "crop_cost": round(min(crop) / min(full), 4), "session_start_s": round(start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="480x270,960x540,1920x1080")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    mark = _record.provenance()  # the code that runs
    rows = []
    with tempfile.TemporaryDirectory(prefix="frender-crop-cost-") as tmp:
        for size in args.sizes.split(","):
            width, height = (int(n) for n in size.split("x"))
            for denoise in (False, True):
                row = trio.run(measure, width, height, denoise, args.samples, args.threads, args.repeats, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    _record.update({"crop_cost": {"command": "python bench/crop_cost.py " + " ".join(sys.argv[1:]), "rows": rows}}, args.out, mark)
    print("\n| frame | denoiser | full frame | window | window's area | window's cost |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {'on' if r['denoise'] else 'off'} | {r['full_s']:.2f} s | {r['crop_s']:.2f} s"
              f" | {r['crop_area']:.1%} | {r['crop_cost']:.1%} |")


if __name__ == "__main__":
    main()
