"""Build the artists' corpus with bpy: files made the way artists make them, each tiny (64x36, 4 samples).

Run as ``python -E -P make_art.py -- OUT``; writes OUT/<case>/... for each case
below, and OUT/cases.json naming each case's .blend (relative to OUT).
Every scene renders something that differs frame to frame (the camera moves).
"""

import json
import math
import os
import sys

import bpy

OUT = sys.argv[sys.argv.index("--") + 1]
CASES = {}


def base(frames=3):
    """A cube on a plane, a camera that moves with the frame, a sun; Cycles, 64x36, 4 samples."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 100
    scene.frame_start, scene.frame_end = 1, frames
    bpy.ops.mesh.primitive_plane_add(size=8)
    bpy.ops.mesh.primitive_cube_add(location=(0, 0, 1))
    cube = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6), rotation=(0.7, 0.2, 0.6))
    bpy.context.active_object.data.energy = 3.0
    bpy.ops.object.camera_add()
    camera = bpy.context.active_object
    scene.camera = camera
    track = camera.constraints.new("TRACK_TO")
    track.target = cube
    for frame in range(1, frames + 1):
        turn = 2 * math.pi * frame / (frames + 1)
        camera.location = (6 * math.cos(turn), 6 * math.sin(turn), 3)
        camera.keyframe_insert("location", frame=frame)
    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.4, 0.6, 1)
    scene.world = world
    return scene, cube


def textured(cube, image):
    """Give the cube a material that shows `image`."""
    material = bpy.data.materials.new("Wood")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    material.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    cube.data.materials.append(material)


def wood(path):
    """A small striped picture saved as PNG at `path` (a texture that is not magenta)."""
    image = bpy.data.images.new("wood", 16, 16)
    pixels = []
    for y in range(16):
        for x in range(16):
            pixels += [0.6, 0.35 + 0.2 * (x % 4 == 0), 0.1, 1.0]
    image.pixels = pixels
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    return image


def save(case, relative, **facts):
    path = os.path.join(OUT, case, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, relative_remap=True)
    CASES[case] = {"blend": os.path.join(case, relative), **facts}


def output(scene, media, fmt, depth, mode, path):
    settings = scene.render.image_settings
    settings.media_type = media
    settings.file_format = fmt
    settings.color_depth = depth
    settings.color_mode = mode
    scene.render.filepath = path


# EXR multilayer with two passes beside the image, named by the file's output path.
scene, cube = base()
scene.view_layers[0].use_pass_z = True
scene.view_layers[0].use_pass_normal = True
output(scene, "MULTI_LAYER_IMAGE", "OPEN_EXR_MULTILAYER", "32", "RGBA", "//render/shot_####.exr")
save("exr_multilayer", "shot.blend", names=["shot_0001.exr", "shot_0002.exr", "shot_0003.exr"])

# EXR half, JPEG and PNG 16-bit, each with a frame step or a list asked for.
scene, cube = base(frames=5)
scene.frame_step = 2
output(scene, "IMAGE", "OPEN_EXR", "16", "RGBA", "//out/half_")
save("exr_half_step", "half.blend", names=["half_0001.exr", "half_0003.exr", "half_0005.exr"])

scene, cube = base()
output(scene, "IMAGE", "JPEG", "8", "RGB", "//jpg/#.jpeg")
save("jpeg", "j.blend", names=["1.jpeg", "2.jpeg", "3.jpeg"])

scene, cube = base(frames=5)
output(scene, "IMAGE", "PNG", "16", "RGB", "/tmp/")
save("png16_list", "p.blend", names=["frame_0001.png", "frame_0004.png", "frame_0005.png"])

# A texture packed into the file.
scene, cube = base()
image = wood(os.path.join(OUT, "scratch", "wood.png"))
image.pack()
textured(cube, image)
save("packed", "packed.blend")

# A texture that is not there: refused, naming it.
scene, cube = base()
image = wood(os.path.join(OUT, "missing_texture", "textures", "wood.png"))
textured(cube, image)
save("missing_texture", "gone.blend")
os.remove(os.path.join(OUT, "missing_texture", "textures", "wood.png"))
os.rmdir(os.path.join(OUT, "missing_texture", "textures"))

# A video output: refused with a clear message.
scene, cube = base()
scene.render.image_settings.media_type = "VIDEO"
save("video", "movie.blend")

with open(os.path.join(OUT, "cases.json"), "w") as file:
    json.dump(CASES, file, indent=1)
