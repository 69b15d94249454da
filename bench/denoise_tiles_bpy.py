"""The in-Blender half of bench/denoise_tiles.py: renders, stitches and denoises; run by it, not by hand.

    python3.11 bench/denoise_tiles_bpy.py OUT WIDTH HEIGHT COLS ROWS SAMPLES

Builds a small Cycles scene with the denoiser on (OpenImageDenoise, prefilter Accurate, quality High), then writes
into OUT:

- ``whole.exr``: the frame rendered whole with the denoiser on (multilayer, 32-bit float, with the denoising passes);
- ``noisy.exr``: the same frame rendered whole with the denoiser off and the denoising passes stored;
- ``tile-R-C.exr``: each tile of a COLS x ROWS grid rendered alone (Blender's border, cropped), denoiser off, passes on;
- ``stitched.exr``: the tiles stitched (frender.blender's own stitch, every pass);
- ``tiled.exr``: the stitched frame denoised once with the scene's own settings (Cycles' OpenImageDenoise path,
  the one Render > Denoise Animation runs: the noisy image with its albedo and normal passes);
- ``after.exr``: the whole noisy frame denoised afterwards the same way (what the tiles' frame is measured against too);
- ``naive.exr``: the tiles each rendered with the denoiser on, stitched (what the seams look like);
- ``whole.png``, ``tiled.png``, ``after.png``, ``naive.png``: all through the same conversion to the artist's 8-bit PNG (the scene's view transform);
- ``tiles.json``: the tiles' boxes;
- ``scene.blend``: the scene as an artist submits it (the denoiser on, 8-bit PNG frames), for frender's own path.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.blender._formats import OutputFormat  # noqa: E402
from frender.blender._denoise import one_part  # noqa: E402  (every pass in one part, and a Vector pass: what the denoiser reads)
from frender.blender._stitch import stitch  # noqa: E402
from frender.blender._window import Window  # noqa: E402


def scene_with_denoiser(width: int, height: int, samples: int):
    """A cube and a sphere on a plane under a sun and a sky; Cycles on the CPU, the denoiser on as artists leave it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = True
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_prefilter = "ACCURATE"
    scene.cycles.denoising_quality = "HIGH"
    scene.cycles.denoising_use_gpu = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    bpy.ops.mesh.primitive_plane_add(size=8)
    bpy.ops.mesh.primitive_cube_add(location=(0, 0, 1))
    cube = bpy.context.active_object
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(1.6, 1.2, 0.7))
    checker = bpy.data.materials.new("Checker")
    checker.use_nodes = True
    nodes = checker.node_tree.nodes
    tex = nodes.new("ShaderNodeTexChecker")
    tex.inputs["Scale"].default_value = 12.0
    checker.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    cube.data.materials.append(checker)
    bpy.ops.object.light_add(type="AREA", location=(2, -2, 4))
    bpy.context.active_object.data.energy = 300.0
    bpy.ops.object.camera_add(location=(5 * math.cos(0.6), -5 * math.sin(0.6), 3))
    camera = bpy.context.active_object
    scene.camera = camera
    track = camera.constraints.new("TRACK_TO")
    track.target = cube
    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.4, 0.6, 1)
    scene.world = world
    scene.view_layers[0].cycles.denoising_store_passes = True  # albedo and normal beside the image
    settings = scene.render.image_settings
    settings.media_type = "MULTI_LAYER_IMAGE"  # Blender 5's multilayer OpenEXR
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "32"
    settings.exr_codec = "ZIP"
    return scene


def save_as_artist(scene, path: Path) -> None:
    """Save the scene as an artist would submit it: the denoiser on, 8-bit PNG frames (what frender's own path renders)."""
    settings = scene.render.image_settings
    settings.media_type = "IMAGE"
    settings.file_format, settings.color_depth, settings.color_mode = "PNG", "8", "RGBA"
    scene.view_layers[0].cycles.denoising_store_passes = False
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    finally:
        scene.view_layers[0].cycles.denoising_store_passes = True
        settings.media_type = "MULTI_LAYER_IMAGE"
        settings.file_format, settings.color_depth = "OPEN_EXR_MULTILAYER", "32"


def render(scene, path: Path, *, denoise: bool, box: Window | None = None) -> None:
    scene.cycles.use_denoising = denoise
    r = scene.render
    r.use_border = box is not None
    r.use_crop_to_border = box is not None
    if box is not None:
        w, h = r.resolution_x, r.resolution_y
        r.border_min_x, r.border_max_x = box.left / w, box.right / w
        r.border_min_y, r.border_max_y = (h - box.bottom) / h, (h - box.top) / h
    r.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def grid(width: int, height: int, cols: int, rows: int) -> list[list[Window]]:
    xs = [width * c // cols for c in range(cols + 1)]
    ys = [height * r // rows for r in range(rows + 1)]
    return [[Window(left=xs[c], top=ys[r], width=xs[c + 1] - xs[c], height=ys[r + 1] - ys[r]) for c in range(cols)] for r in range(rows)]


def to_png(scene, exr: Path, png: Path) -> None:
    """The multilayer EXR's Combined pass as the artist's 8-bit PNG, through the scene's colour management."""
    image = bpy.data.images.load(str(exr))
    settings = scene.render.image_settings
    settings.media_type = "IMAGE"
    settings.file_format, settings.color_depth, settings.color_mode = "PNG", "8", "RGBA"
    try:
        image.save_render(str(png), scene=scene)
    finally:
        settings.media_type = "MULTI_LAYER_IMAGE"
        settings.file_format, settings.color_depth = "OPEN_EXR_MULTILAYER", "32"
        bpy.data.images.remove(image)


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    width, height, cols, rows, samples = (int(a) for a in argv[1:6])
    out.mkdir(parents=True, exist_ok=True)
    scene = scene_with_denoiser(width, height, samples)
    save_as_artist(scene, out / "scene.blend")
    render(scene, out / "whole.exr", denoise=True)
    render(scene, out / "noisy.exr", denoise=False)
    boxes = [box for row in grid(width, height, cols, rows) for box in row]
    tiles = []
    for box in boxes:
        path = out / f"tile-{box.top}-{box.left}.exr"
        render(scene, path, denoise=False, box=box)
        tiles.append((box, path))
    stitch(tiles, OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGBA"), width=width, height=height, out=out / "stitched.exr")
    naive = []  # what tiling a denoised file naively gives: each tile denoised alone, seams where they meet
    for box in boxes:
        path = out / f"denoised-tile-{box.top}-{box.left}.exr"
        render(scene, path, denoise=True, box=box)
        naive.append((box, path))
    stitch(naive, OutputFormat(file_format="OPEN_EXR_MULTILAYER", color_depth="32", color_mode="RGBA"), width=width, height=height, out=out / "naive.exr")
    scene.cycles.use_denoising = True  # the settings the denoiser reads: the scene's own
    one_part(out / "stitched.exr", out / "stitched-one-part.exr")
    bpy.ops.cycles.denoise_animation(input_filepath=str(out / "stitched-one-part.exr"), output_filepath=str(out / "tiled.exr"))
    one_part(out / "noisy.exr", out / "noisy-one-part.exr")  # the whole frame through the same denoising afterwards
    bpy.ops.cycles.denoise_animation(input_filepath=str(out / "noisy-one-part.exr"), output_filepath=str(out / "after.exr"))
    scene.render.dither_intensity = 0.0  # both frames through the same conversion: only the denoising differs
    to_png(scene, out / "whole.exr", out / "whole.png")
    to_png(scene, out / "tiled.exr", out / "tiled.png")
    to_png(scene, out / "naive.exr", out / "naive.png")
    to_png(scene, out / "after.exr", out / "after.png")
    (out / "tiles.json").write_text(json.dumps([[b.left, b.top, b.width, b.height] for b in boxes]))


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:])
