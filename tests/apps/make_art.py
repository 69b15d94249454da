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
FONT = os.path.join(bpy.utils.system_resource("DATAFILES"), "fonts", "Inter.woff2")  # ships with every Blender 4+
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

# A compositor Glare (fog glow) over the render: every pixel of the result depends on the whole image, so
# a window rendered alone differs from the frame and the job is checked on whole frames.
scene, cube = base()
tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
scene.compositing_node_group = tree
glare = tree.nodes.new("CompositorNodeGlare")
glare.inputs["Threshold"].default_value = 0.2
tree.links.new(tree.nodes.new("CompositorNodeRLayers").outputs["Image"], glare.inputs["Image"])
tree.links.new(glare.outputs[0], tree.nodes.new("NodeGroupOutput").inputs[0])
output(scene, "IMAGE", "PNG", "8", "RGBA", "//glow/g_")
save("composited", "glow.blend", names=["g_0001.png", "g_0002.png", "g_0003.png"])

# The denoiser on: crop checks render their windows padded and aligned to the denoiser's grid.
scene, cube = base()
scene.cycles.use_denoising = True
output(scene, "IMAGE", "PNG", "8", "RGBA", "//dn/d_")
save("denoised", "dn.blend", names=["d_0001.png", "d_0002.png", "d_0003.png"])

# EEVEE with a UDIM tiled texture over two tiles and screen-space reflections, like Blender's own UDIM test
# scene: a window rendered alone differs from the same pixels of the frame (the border hides what the
# reflections trace), so the requester measures that at submit and checks the job on whole frames.
def udim_eevee(folder, frames=2):
    scene, cube = base(frames=frames)
    scene.render.engine = "BLENDER_EEVEE"
    scene.eevee.taa_render_samples = 4
    scene.eevee.use_raytracing = True
    scene.eevee.ray_tracing_method = "SCREEN"
    for tile, colour in ((1001, (0.8, 0.2, 0.1)), (1002, (0.1, 0.3, 0.9))):
        picture = wood(os.path.join(folder, "textures", f"tiles.{tile}.png"))
        picture.pixels = [c for y in range(16) for x in range(16) for c in (*(v * (1.0 if (x // 4 + y // 4) % 2 else 0.4) for v in colour), 1.0)]
        picture.save()
        bpy.data.images.remove(picture)
    tiles = bpy.data.images.load(os.path.join(folder, "textures", "tiles.1001.png"))
    tiles.source = "TILED"  # finds tile 1002 beside it: the path becomes tiles.<UDIM>.png
    assert [t.number for t in tiles.tiles] == [1001, 1002]
    plane = bpy.data.objects["Plane"]
    textured(cube, tiles)
    plane.data.materials.append(cube.data.materials[0])
    shader = cube.data.materials[0].node_tree.nodes["Principled BSDF"]
    shader.inputs["Roughness"].default_value, shader.inputs["Metallic"].default_value = 0.1, 0.6
    for loop in plane.data.uv_layers.active.data:  # the plane's UVs span both tiles
        loop.uv = (loop.uv[0] * 2, loop.uv[1])
    return scene


udim_eevee(os.path.join(OUT, "udim_eevee"))
output(bpy.context.scene, "IMAGE", "PNG", "8", "RGBA", "//udim/u_")
save("udim_eevee", "udim.blend", names=["u_0001.png", "u_0002.png"])

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

# One shot that uses everything an artist's file points to, each at a relative path:
# a texture beside it, one in a sibling folder outside its folder (//../tex/stone.png),
# an image sequence, a font, a linked library that links another, an Alembic cache.
def library_scene(with_file_output=False):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_ico_sphere_add(radius=0.7, location=(1.5, 0, 0.7))
    prop = bpy.context.active_object
    prop.name = "Prop"
    if with_file_output:
        tree = bpy.data.node_groups.new("Comp", "CompositorNodeTree")
        tree.nodes.new("CompositorNodeOutputFile")
        bpy.context.scene.compositing_node_group = tree
    return prop


def linking(scene, library_path):
    with bpy.data.libraries.load(library_path, link=True, relative=True) as (data_from, data_to):
        data_to.objects = ["Prop"]
    for obj in data_to.objects:
        scene.collection.objects.link(obj)


DEPS = os.path.join(OUT, "deps", "shots")
os.makedirs(os.path.join(DEPS, "libs"), exist_ok=True)
library_scene()
red = bpy.data.materials.new("Red")
red.diffuse_color = (0.8, 0.1, 0.1, 1)
red.use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(DEPS, "libs", "lib2.blend"))
prop = library_scene()
with bpy.data.libraries.load(os.path.join(DEPS, "libs", "lib2.blend"), link=True, relative=True) as (data_from, data_to):
    data_to.materials = ["Red"]
prop.data.materials.append(data_to.materials[0])
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(DEPS, "libs", "lib.blend"), relative_remap=True)

scene, cube = base()
textured(cube, wood(os.path.join(DEPS, "textures", "wood.png")))
plane = bpy.data.objects["Plane"]
stone = wood(os.path.join(OUT, "deps", "tex", "stone.png"))
stone.pixels = [0.5, 0.5, 0.55, 1.0] * (16 * 16)
stone.save()
textured(plane, stone)
for frame in (1, 2, 3):
    picture = wood(os.path.join(DEPS, "seq", f"pic_{frame:04d}.png"))
    picture.pixels = [0.2 * frame, 0.3, 0.9 - 0.2 * frame, 1.0] * (16 * 16)
    picture.save()
    bpy.data.images.remove(picture)
bpy.ops.mesh.primitive_cube_add(size=0.8, location=(-1.8, 0.5, 0.4))
sequence = bpy.data.images.load(os.path.join(DEPS, "seq", "pic_0001.png"))
sequence.source = "SEQUENCE"
textured(bpy.context.active_object, sequence)
user = bpy.context.active_object.data.materials[0].node_tree.nodes["Image Texture"].image_user
user.frame_duration, user.frame_start, user.use_auto_refresh = 3, 1, True
os.makedirs(os.path.join(DEPS, "fonts"), exist_ok=True)
with open(FONT, "rb") as source, open(os.path.join(DEPS, "fonts", "inter.woff2"), "wb") as copy:
    copy.write(source.read())
bpy.ops.object.text_add(location=(-1, -2, 2.2))
text = bpy.context.active_object
text.data.body = "fR"
text.data.font = bpy.data.fonts.load(os.path.join(DEPS, "fonts", "inter.woff2"))
linking(scene, os.path.join(DEPS, "libs", "lib.blend"))
# An Alembic cache: a cone's motion, exported, then read back through a Transform Cache.
bpy.ops.mesh.primitive_cone_add(radius1=0.4, depth=0.8, location=(0, -1.8, 0.4))
cone = bpy.context.active_object
cone.keyframe_insert("location", frame=1)
cone.location.z = 1.6
cone.keyframe_insert("location", frame=3)
bpy.ops.object.select_all(action="DESELECT")
cone.select_set(True)
os.makedirs(os.path.join(DEPS, "cache"), exist_ok=True)
bpy.ops.wm.alembic_export(filepath=os.path.join(DEPS, "cache", "cone.abc"), selected=True, start=1, end=3, as_background_job=False)
bpy.data.objects.remove(cone)
bpy.ops.wm.alembic_import(filepath=os.path.join(DEPS, "cache", "cone.abc"), as_background_job=False)
save("deps", os.path.join("shots", "scene.blend"), names=["frame_0001.png", "frame_0002.png", "frame_0003.png"])

# A library carrying a compositor File Output node: refused, though the main file is clean.
library_scene(with_file_output=True)
save("library_file_output", "evil_lib.blend")
scene, cube = base()
linking(scene, os.path.join(OUT, "library_file_output", "evil_lib.blend"))
save("library_file_output", "main.blend")

# A library that is not there.
library_scene()
save("missing_library", "gone_lib.blend")
scene, cube = base()
linking(scene, os.path.join(OUT, "missing_library", "gone_lib.blend"))
save("missing_library", "main.blend")
os.remove(os.path.join(OUT, "missing_library", "gone_lib.blend"))

with open(os.path.join(OUT, "cases.json"), "w") as file:
    json.dump(CASES, file, indent=1)
