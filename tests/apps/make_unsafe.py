"""Build, with bpy, the files an artist may download that must not be packed or rendered as they are.

Run as ``python -E -P make_unsafe.py -- OUT HOME``; writes OUT/<case>/... and
OUT/cases.json naming each case's .blend (relative to OUT). HOME is a fake home
folder: the "key" case points a fake-user image at HOME/.ssh/id_ed25519.
Each scene is tiny (64x36, 4 samples) and renders unless its case says otherwise.
"""

import json
import os
import sys

import bpy

OUT, HOME = sys.argv[sys.argv.index("--") + 1:][:2]
FONT = os.path.join(bpy.utils.system_resource("DATAFILES"), "fonts", "Inter.woff2")
CASES = {}
KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"


def base(camera=True):
    """A cube on a plane lit by a sun; a camera looking at it unless told otherwise. Cycles, 64x36, 4 samples, PNG."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 100
    scene.frame_start, scene.frame_end = 1, 2
    bpy.ops.mesh.primitive_plane_add(size=8)
    bpy.ops.mesh.primitive_cube_add(location=(0, 0, 1))
    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
    if camera:
        bpy.ops.object.camera_add(location=(6, -6, 4), rotation=(1.1, 0, 0.78))
        scene.camera = bpy.context.active_object
    return scene


def save(case, relative, **facts):
    path = os.path.join(OUT, case, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, relative_remap=True)
    CASES[case] = {"blend": os.path.join(case, relative), **facts}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)


def unused_image(name, path):
    """An image datablock reading `path`, used by nothing and kept by its fake user (what a downloaded file can hide)."""
    image = bpy.data.images.new(name, 4, 4)
    image.source = "FILE"
    image.filepath = path
    image.use_fake_user = True
    return image


def texture(obj, path):
    """A material on `obj` showing a 16x16 picture saved as PNG at `path`."""
    image = bpy.data.images.new(os.path.basename(path), 16, 16)
    image.pixels = [0.5, 0.4, 0.3, 1.0] * 256
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    material = bpy.data.materials.new("Stone")
    material.use_nodes = True
    node = material.node_tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    material.node_tree.links.new(node.outputs["Color"], material.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    obj.data.materials.append(material)


# An unused image whose path is the artist's SSH key.
write(os.path.join(HOME, ".ssh", "id_ed25519"), KEY)
base()
unused_image("id_ed25519", os.path.join(HOME, ".ssh", "id_ed25519"))
save("key", "shot.blend", key=os.path.join(HOME, ".ssh", "id_ed25519"))

# A texture in a sibling folder of the shot's: outside the project folder, sent only with consent.
base()
texture(bpy.data.objects["Cube"], os.path.join(OUT, "outside", "tex", "stone.png"))
save("outside", os.path.join("shots", "shot.blend"), texture=os.path.join(OUT, "outside", "tex", "stone.png"))

# Datablocks whose files are not what they say: an image that is a text file, a font that is a PNG,
# a library that is not a .blend.
base()
write(os.path.join(OUT, "not_image", "notes.png"), b"my bank PIN is 1234\n")
unused_image("notes", os.path.join(OUT, "not_image", "notes.png"))
save("not_image", "shot.blend", path=os.path.join(OUT, "not_image", "notes.png"))

base()
with open(FONT, "rb") as source:
    write(os.path.join(OUT, "not_font", "fonts", "title.woff2"), source.read())
bpy.ops.object.text_add()
bpy.context.active_object.data.font = bpy.data.fonts.load(os.path.join(OUT, "not_font", "fonts", "title.woff2"))
save("not_font", "shot.blend", path=os.path.join(OUT, "not_font", "fonts", "title.woff2"))
write(os.path.join(OUT, "not_font", "fonts", "title.woff2"), b"\x89PNG\r\n\x1a\n" + b"\0" * 64)

bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_ico_sphere_add()
bpy.context.active_object.name = "Prop"
os.makedirs(os.path.join(OUT, "not_library"), exist_ok=True)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(OUT, "not_library", "props.blend"))
scene = base()
with bpy.data.libraries.load(os.path.join(OUT, "not_library", "props.blend"), link=True, relative=True) as (data_from, data_to):
    data_to.objects = ["Prop"]
for obj in data_to.objects:
    scene.collection.objects.link(obj)
save("not_library", "shot.blend", path=os.path.join(OUT, "not_library", "props.blend"))
write(os.path.join(OUT, "not_library", "props.blend"), b"PK\x03\x04 a zip of someone's documents")

# No camera: Blender's own test files have none; every frame fails "Cannot render, no camera".
base(camera=False)
save("no_camera", "scene.blend")

# No active camera, but a timeline marker binds one: Blender renders from it, so the file is fine.
scene = base(camera=False)
bpy.ops.object.camera_add(location=(6, -6, 4), rotation=(1.1, 0, 0.78))
scene.timeline_markers.new("shot", frame=1).camera = bpy.context.active_object
scene.camera = None
save("marker_camera", "scene.blend")

# A library file: materials and no scene (Blender opens it with an empty scene).
bpy.ops.wm.read_factory_settings(use_empty=True)
os.makedirs(os.path.join(OUT, "no_scene"), exist_ok=True)
bpy.data.libraries.write(os.path.join(OUT, "no_scene", "materials.blend"), {bpy.data.materials.new("Gold")})
CASES["no_scene"] = {"blend": os.path.join("no_scene", "materials.blend")}

# A video output (FFmpeg, H.264 in Matroska).
scene = base()
scene.render.image_settings.media_type = "VIDEO"
scene.render.image_settings.file_format = "FFMPEG"
scene.render.filepath = "//movie/shot_"
save("video", "movie.blend")

# OpenEXR output: its header attributes must not carry the friend's path either.
scene = base()
scene.render.image_settings.file_format = "OPEN_EXR"
save("exr", "shot.blend")

with open(os.path.join(OUT, "cases.json"), "w") as file:
    json.dump(CASES, file, indent=1)
