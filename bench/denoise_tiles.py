"""A denoised still in tiles: how close is "noisy tiles with the denoising passes, stitched, denoised once" to the
frame rendered whole with the denoiser on?

    python bench/denoise_tiles.py [--size 160x90] [--tiles 2x2] [--samples 16] [--border 3]

Real Blender (bench/denoise_tiles_bpy.py, under the Python that runs this, which has bpy): a small Cycles scene with
the denoiser on (OpenImageDenoise, prefilter Accurate, quality High) rendered whole; then each tile rendered alone
(render border, cropped) with the denoiser off and the denoising passes (albedo, normal) stored, stitched by
frender's own stitch, and denoised once with the scene's settings (Cycles' OpenImageDenoise path, Render > Denoise
Animation's). Both frames go through the same conversion to 8-bit PNG and are compared: pixels off by more than 2/255
and 4/255 (the largest channel difference of each pixel) and the largest difference, over the frame, over the tile
borders (pixels within ``border`` px of an edge between tiles) and over the rest. The same figures for the tiles
each denoised alone (what tiling a denoised file without this would give) show what a seam is. ``product`` is
frender's own path on the same scene saved as an artist submits it (8-bit PNG, dither on): a noisy session's tiles
(``blender.start_session(noisy=True)``), stitched, denoised once by ``blender.denoise_frame`` (what the requester runs),
against the frame a plain session renders whole, with the seconds the denoising step took. Writes bench/results.json
key ``denoise_tiles``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _record  # noqa: E402


# frender's own path (``product``) runs in this process: frender on the path, trio and the numpy it imports here
sys.path.insert(0, str(HERE.parent))

WHAT = ("fraction of the frame's pixels off by more than 2/255 against the frame rendered whole with the denoiser on; "
        "tiles rendered noisy with the denoising passes, stitched, denoised once")


def _combined(path: Path) -> np.ndarray:
    """The Combined pass's RGB of a multilayer EXR, float32, rows from the top."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as exr:
        found = {name.rsplit(".", 1)[1]: np.asarray(c.pixels, np.float32) for part in exr.parts for name, c in part.channels.items()
                 if name.rsplit(".", 2)[-2] == "Combined"}
    return np.stack([found["R"], found["G"], found["B"]], axis=-1)


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), np.int16)


def border_mask(width: int, height: int, boxes: list[list[int]], border: int) -> np.ndarray:
    """True for the pixels within ``border`` px of an edge between two tiles (the frame's own edges are no seam)."""
    mask = np.zeros((height, width), bool)
    for left, top, w, h in boxes:
        for x in (left, left + w):
            if 0 < x < width:
                mask[top : top + h, max(0, x - border) : x + border] = True
        for y in (top, top + h):
            if 0 < y < height:
                mask[max(0, y - border) : y + border, left : left + w] = True
    return mask


def figures(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Pixels off by more than 2/255 and 4/255 (as fractions) and the largest difference, in 8-bit steps; over the
    whole frame, its tile borders (``mask``) and the rest."""
    diff = np.abs(a - b).max(axis=-1)

    def of(region: np.ndarray) -> dict[str, Any]:
        d = diff[region]
        return {"pixels": int(d.size), "over_2": round(float((d > 2).mean()), 5), "over_4": round(float((d > 4).mean()), 5),
                "max": int(d.max()) if d.size else 0}

    return {"frame": of(np.ones_like(mask)), "borders": of(mask), "interior": of(~mask)}


async def _product(blend: Path, boxes: list[list[int]], work: Path) -> dict[str, Any]:
    """frender's own path on the artist's file (``blend``): a noisy session renders each tile (``_inblender.render_noisy``),
    the tiles are stitched, and ``blender.denoise_frame`` writes the frame in the file's own 8-bit PNG; beside it the frame
    rendered whole by a plain session (the denoiser in the render) and the whole noisy frame denoised the same way."""
    import os

    from frender import blender

    backend = blender.find_backend()
    tiles = []
    async with await blender.start_session(backend, blend, work, noisy=True) as session:
        for left, top, w, h in boxes:
            box = blender.Window(left=left, top=top, width=w, height=h)
            path = (await session.render([1], window=box))[0].path
            tiles.append((box, path.rename(work / f"noisy-tile-{left}-{top}.exr")))
        whole = (await session.render([1]))[0].path.rename(work / "noisy-whole.exr")
    width, height = blender.output_size(whole, blender.NOISY_TILES)
    blender.stitch(tiles, blender.NOISY_TILES, width=width, height=height, out=work / "noisy-stitched.exr")
    start = time.perf_counter()
    await blender.denoise_frame(backend, blend, work / "noisy-stitched.exr", work, work / "tiled.png", limits=blender.Limits())
    seconds = time.perf_counter() - start
    await blender.denoise_frame(backend, blend, whole, work, work / "after.png", limits=blender.Limits())
    direct = (await blender.render(backend, blend, work, [1]))[0].path
    os.replace(direct, work / "direct.png")
    return {"denoise_seconds": round(seconds, 2)}


def run(*, size: tuple[int, int] = (160, 90), tiles: tuple[int, int] = (2, 2), samples: int = 16, border: int = 3,
        keep: Path | None = None) -> dict[str, Any]:
    """Render, stitch, denoise and compare (see the module's doc); returns the figures."""
    with tempfile.TemporaryDirectory(prefix="frender-denoise-tiles-") as tmp:
        out = keep or Path(tmp)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-E", str(HERE / "denoise_tiles_bpy.py"), "--", str(out), str(size[0]), str(size[1]),
                        str(tiles[0]), str(tiles[1]), str(samples)], check=True, capture_output=True)  # fmt: skip
        seconds = time.perf_counter() - start
        boxes = json.loads((out / "tiles.json").read_text())
        import trio

        (out / "product").mkdir(exist_ok=True)
        blend = Path(shutil.copy(out / "scene.blend", out / "product" / "scene.blend"))
        product_facts = trio.run(_product, blend, boxes, out / "product")
        mask = border_mask(size[0], size[1], boxes, border)
        whole, tiled, after, naive = (_png(out / f"{name}.png") for name in ("whole", "tiled", "after", "naive"))
        noisy_diff = float(np.abs(_combined(out / "stitched.exr") - _combined(out / "noisy.exr")).max())
        linear_diff = float(np.abs(_combined(out / "tiled.exr") - _combined(out / "whole.exr")).max())
        after_diff = float(np.abs(_combined(out / "tiled.exr") - _combined(out / "after.exr")).max())
        result = {
            "tiled": figures(whole, tiled, mask),
            "whole_denoised_after": figures(whole, after, mask),
            "tiled_vs_whole_denoised_after": figures(after, tiled, mask),
            "each_tile_denoised": figures(whole, naive, mask),
            # frender's own path (the artist's 8-bit PNG, its dither on) against the frame a friend renders whole
            "product": {
                **figures(_png(out / "product" / "direct.png"), _png(out / "product" / "tiled.png"), mask), **product_facts,
                "equals_whole_noisy_denoised_once": bool(np.array_equal(*(_png(out / "product" / f"{n}.png") for n in ("tiled", "after")))),
            },
            "stitched_noisy_max_diff": noisy_diff,
            "linear_max_diff": linear_diff,
            "linear_max_diff_vs_whole_denoised_after": after_diff,
            "params": {"size": f"{size[0]}x{size[1]}", "tiles": f"{tiles[0]}x{tiles[1]}", "samples": samples, "border_px": border,
                       "denoiser": "OPENIMAGEDENOISE", "prefilter": "ACCURATE", "quality": "HIGH", "png": "8-bit RGBA, dither off"},
            "seconds": round(seconds, 1),
        }
    t = result["tiled"]
    # Against the frame rendered whole, the borders no worse than the rest on every figure (a scene's edges may fall
    # on the borders: the whole frame denoised afterwards then shows the same, at the same pixels).
    result["borders_no_worse"] = all(t["borders"][k] <= t["interior"][k] for k in ("over_2", "over_4", "max"))
    # No seam at all: the tiles' frame is, pixel for pixel, the whole noisy frame denoised the same way.
    result["seamless"] = result["tiled_vs_whole_denoised_after"]["frame"]["max"] == 0 and after_diff == 0.0
    return result


def step(*, size: tuple[int, int] = (1920, 1080), samples: int = 1) -> dict[str, Any]:
    """The requester's denoising step alone at ``size``: the demo scene with the denoiser on (OpenImageDenoise, prefilter
    Accurate, quality High) rendered whole and noisy by a ``noisy`` session, then ``blender.denoise_frame`` into 8-bit
    PNG, timed (the one-part rewrite, Blender's start and load, the denoiser, the save), with the machine's load, and
    the bytes of the noisy frame (what its tiles weigh together) and of the PNG."""
    import os

    import trio

    from frender import blender

    async def main(work: Path) -> dict[str, Any]:
        backend = blender.find_backend()
        blend = blender.build_demo_scene(work / "scene.blend", frames=1, resolution=size, samples=samples, denoise=True, backend=backend)
        async with await blender.start_session(backend, blend, work, noisy=True) as session:
            noisy = (await session.render([1]))[0].path.rename(work / "noisy-whole.exr")
        start = time.perf_counter()
        await blender.denoise_frame(backend, blend, noisy, work, work / "step.png", limits=blender.Limits(wall_seconds=1800))
        return {"size": f"{size[0]}x{size[1]}", "seconds": round(time.perf_counter() - start, 1), "load_average": os.getloadavg()[0],
                "cpus": os.cpu_count(), "noisy_frame_bytes": noisy.stat().st_size, "png_bytes": (work / "step.png").stat().st_size}

    with tempfile.TemporaryDirectory(prefix="frender-denoise-step-") as tmp:
        return trio.run(main, Path(tmp))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="160x90")
    parser.add_argument("--tiles", default="2x2")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--border", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the renders in this folder")
    parser.add_argument("--step", default="", help="also time the requester's denoising step alone at this size (e.g. 1920x1080)")
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    c, r = (int(v) for v in args.tiles.split("x"))
    result = run(size=(w, h), tiles=(c, r), samples=args.samples, border=args.border, keep=args.keep)
    if args.step:
        sw, sh = (int(v) for v in args.step.split("x"))
        result["step"] = step(size=(sw, sh))
    command = " ".join(["python bench/denoise_tiles.py", *(sys.argv[1:] if argv is None else argv)])
    t = result["tiled"]
    _record.update({"denoise_tiles": {"value": t["frame"]["over_2"], "what": WHAT, "command": command, **result}})
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
