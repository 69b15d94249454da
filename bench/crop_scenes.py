"""Build one small scene per engine and effect with bpy, for bench/crop_equal.py.

Run as ``python -E -P crop_scenes.py -- OUT WIDTH HEIGHT NAME...``; writes OUT/NAME.blend for each NAME of
``SCENES``. Each is a cube on a plane under a sun, a camera moving with the frame (as tests/apps/make_art.py's
base), 4 samples, PNG 8-bit, switched to one engine and one effect.
"""

import math
import os
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1 :]
OUT, WIDTH, HEIGHT, NAMES = args[0], int(args[1]), int(args[2]), args[3:]


def base(engine):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = engine
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.eevee.taa_render_samples = 4
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = WIDTH, HEIGHT, 100
    scene.frame_start, scene.frame_end = 1, 3
    bpy.ops.mesh.primitive_plane_add(size=8)
    bpy.ops.mesh.primitive_cube_add(location=(0, 0, 1))
    cube = bpy.context.active_object
    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6), rotation=(0.7, 0.2, 0.6))
    bpy.context.active_object.data.energy = 3.0
    bpy.ops.object.camera_add()
    camera = bpy.context.active_object
    scene.camera = camera
    camera.constraints.new("TRACK_TO").target = cube
    for frame in (1, 2, 3):
        turn = 2 * math.pi * frame / 4
        camera.location = (6 * math.cos(turn), 6 * math.sin(turn), 3)
        camera.keyframe_insert("location", frame=frame)
    cube.keyframe_insert("location", frame=1)  # the cube moves too: motion blur has something to blur
    cube.location.z = 1.6
    cube.keyframe_insert("location", frame=3)
    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.4, 0.6, 1)
    scene.world = world
    material = bpy.data.materials.new("Shiny")
    material.use_nodes = True
    shader = material.node_tree.nodes["Principled BSDF"]
    shader.inputs["Roughness"].default_value, shader.inputs["Metallic"].default_value = 0.1, 0.6
    for obj in (cube, bpy.data.objects["Plane"]):
        obj.data.materials.append(material)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_depth = "8"
    return scene


def glare(scene, kind):
    tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    scene.compositing_node_group = tree
    node = tree.nodes.new("CompositorNodeGlare")
    node.inputs["Threshold"].default_value = 0.2
    if kind:
        node.inputs["Type"].default_value = kind
    tree.links.new(tree.nodes.new("CompositorNodeRLayers").outputs["Image"], node.inputs["Image"])
    tree.links.new(node.outputs[0], tree.nodes.new("NodeGroupOutput").inputs[0])


def cycles(scene):
    pass


def cycles_adaptive(scene):
    scene.cycles.samples = 64
    scene.cycles.use_adaptive_sampling = True  # Blender's default: a pixel stops once it and its neighbours converge
    scene.cycles.adaptive_threshold = 0.1


def cycles_denoised(scene):
    scene.cycles.use_denoising = True


def motion_blur(scene):
    scene.render.use_motion_blur = True


def cycles_glare(scene):
    glare(scene, "")  # the default: fog glow


def eevee_ssr(scene):
    scene.eevee.use_raytracing = True
    scene.eevee.ray_tracing_method = "SCREEN"


def eevee_fast_gi(scene):
    scene.eevee.use_fast_gi = True
    scene.eevee.fast_gi_method = "GLOBAL_ILLUMINATION"


def eevee_bloom(scene):
    glare(scene, "Bloom")  # EEVEE's bloom is the compositor's since 4.2


SCENES = {
    "cycles": ("CYCLES", cycles),
    "cycles_adaptive": ("CYCLES", cycles_adaptive),
    "cycles_denoised": ("CYCLES", cycles_denoised),
    "cycles_motion_blur": ("CYCLES", motion_blur),
    "cycles_glare": ("CYCLES", cycles_glare),
    "workbench": ("BLENDER_WORKBENCH", cycles),
    "eevee": ("BLENDER_EEVEE", cycles),
    "eevee_ssr": ("BLENDER_EEVEE", eevee_ssr),
    "eevee_fast_gi": ("BLENDER_EEVEE", eevee_fast_gi),
    "eevee_motion_blur": ("BLENDER_EEVEE", motion_blur),
    "eevee_bloom": ("BLENDER_EEVEE", eevee_bloom),
}

os.makedirs(OUT, exist_ok=True)
for name in NAMES:
    engine, effect = SCENES[name]
    scene = base(engine)
    effect(scene)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(OUT, f"{name}.blend"))
