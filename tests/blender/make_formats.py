"""Render one tiny frame in every output format fRender takes, and ask Blender how it names files.

Run as ``python -E -P make_formats.py -- OUT``: writes OUT/<format>.<ext> for
each format below and OUT/names.json, Blender's own `frame_path` for a table
of output paths, formats and frames (the rules `output_name` must follow).
"""

import json
import os
import sys

import bpy

OUT = sys.argv[sys.argv.index("--") + 1]
FORMATS = {
    "png8": ("IMAGE", "PNG", "8", "RGBA"),
    "png16": ("IMAGE", "PNG", "16", "RGBA"),
    "png16bw": ("IMAGE", "PNG", "16", "BW"),
    "jpeg": ("IMAGE", "JPEG", "8", "RGB"),
    "tiff8": ("IMAGE", "TIFF", "8", "RGBA"),
    "tiff16": ("IMAGE", "TIFF", "16", "RGB"),
    "exr_half": ("IMAGE", "OPEN_EXR", "16", "RGBA"),
    "exr_float": ("IMAGE", "OPEN_EXR", "32", "RGB"),
    "exr_multilayer": ("MULTI_LAYER_IMAGE", "OPEN_EXR_MULTILAYER", "32", "RGBA"),
}
PATTERNS = ["//render/shot_####.exr", "//render/shot_", "//a##b##c", "//x.png", "//x.jpg.exr", "//x#.tif", "//x#.tiff",
            "//x#.jpeg", "//x#.EXR", "//x#.txt", "//shot.####", "//take_#_v2", "//n#.mp4"]  # fmt: skip

bpy.ops.wm.read_factory_settings(use_empty=False)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 4
scene.cycles.device = "CPU"
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 100
scene.view_layers[0].use_pass_z = True
scene.view_layers[0].use_pass_normal = True
settings = scene.render.image_settings
for name, (media, fmt, depth, mode) in FORMATS.items():
    settings.media_type = media
    settings.file_format, settings.color_depth, settings.color_mode = fmt, depth, mode
    scene.render.filepath = os.path.join(OUT, name + scene.render.file_extension)
    bpy.ops.render.render(write_still=True)

names = []
for fmt in ("PNG", "JPEG", "TIFF", "OPEN_EXR"):
    settings.media_type = "IMAGE"
    settings.file_format = fmt
    for pattern in PATTERNS:
        for use_extension in (True, False):
            scene.render.filepath, scene.render.use_file_extension = pattern, use_extension
            for frame in (7, -3, 12345):
                names.append([fmt, pattern, use_extension, scene.render.file_extension, frame,
                              os.path.basename(scene.render.frame_path(frame=frame))])  # fmt: skip
with open(os.path.join(OUT, "names.json"), "w") as file:
    json.dump(names, file)
