"""Build the malicious .blend fixtures with bpy (run as a script, never imported by pytest).

Usage: python make_fixtures.py JOBS_ROOT OUTSIDE_DIR

Each fixture is JOBS_ROOT/<name>/scene.blend: a tiny Cycles scene plus one
attack aimed at OUTSIDE_DIR, a folder outside every job directory holding the
canary image, an OBJ mesh and a library .blend. An attack that runs writes
OUTSIDE_DIR/canary-<name>.
"""

import os
import sys

import bpy

CANARY_RGBA = (1.0, 0.0, 1.0, 1.0)  # magenta: absent from the base scene


def canary_code(name, outside):
    path = os.path.join(outside, f"canary-{name}")
    return f"open({path!r}, 'w').write('pwned')"


def base_scene():
    """A 64x36 Cycles scene with a camera, a light and a cube in view."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 64, 36
    scene.render.resolution_percentage = 100
    scene.frame_start = scene.frame_end = 1
    scene.view_settings.view_transform = "Standard"  # so the canary stays pure magenta
    bpy.ops.mesh.primitive_cube_add(size=2)
    bpy.ops.object.light_add(type="SUN", rotation=(0.5, 0.3, 0))
    bpy.ops.object.camera_add(location=(0, -6, 0), rotation=(1.5708, 0, 0))
    scene.camera = bpy.context.active_object
    return scene


def text_block(name, code):
    text = bpy.data.texts.new(f"{name}.py")
    text.write(code)
    return text


def save(root, name):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(root, name, "scene.blend"))


def autorun_text(scene, outside):
    text_block("autorun", canary_code("autorun_text", outside)).use_module = True


def python_driver(scene, outside):
    cube = bpy.data.objects["Cube"]
    driver = cube.driver_add("location", 0).driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('os').system('touch {outside}/canary-python_driver') * 0"


def freestyle_module(scene, outside):
    scene.render.use_freestyle = True
    settings = scene.view_layers[0].freestyle_settings
    settings.mode = "SCRIPT"
    module = settings.modules.new()
    module.script = text_block("style", canary_code("freestyle_module", outside))


def osl_script(scene, outside):
    scene.cycles.shading_system = True
    material = bpy.data.materials.new("OSL")
    material.use_nodes = True
    node = material.node_tree.nodes.new("ShaderNodeScript")
    node.mode = "INTERNAL"
    node.script = text_block("shader", f'shader s(output color c = texture("{outside}/canary.png", u, v)) {{}}')
    bpy.data.objects["Cube"].data.materials.append(material)


def outside_texture(scene, outside):
    material = bpy.data.materials.new("Canary")
    material.use_nodes = True
    nodes = material.node_tree.nodes
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = bpy.data.images.load(os.path.join(outside, "canary.png"))
    emission = nodes.new("ShaderNodeEmission")
    material.node_tree.links.new(texture.outputs["Color"], emission.inputs["Color"])
    material.node_tree.links.new(emission.outputs[0], nodes["Material Output"].inputs["Surface"])
    bpy.data.objects["Cube"].data.materials.append(material)


def geometry_import(scene, outside):
    group = bpy.data.node_groups.new("Import", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    importer = group.nodes.new("GeometryNodeImportOBJ")
    importer.inputs["Path"].default_value = os.path.join(outside, "canary.obj")
    realize = group.nodes.new("GeometryNodeRealizeInstances")  # the importer yields instances
    output = group.nodes.new("NodeGroupOutput")
    group.links.new(importer.outputs[0], realize.inputs[0])
    group.links.new(realize.outputs[0], output.inputs[0])
    bpy.data.objects["Cube"].modifiers.new("Import", "NODES").node_group = group


def file_output(scene, outside):
    tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
    scene.compositing_node_group = tree
    layers = tree.nodes.new("CompositorNodeRLayers")
    node = tree.nodes.new("CompositorNodeOutputFile")
    node.directory = outside
    node.file_name = "canary-file_output"
    node.file_output_items.new("RGBA", "Image")
    tree.links.new(layers.outputs["Image"], node.inputs[0])
    scene.render.use_compositing = True


def linked_library(scene, outside):
    with bpy.data.libraries.load(os.path.join(outside, "library.blend"), link=True) as (source, target):
        target.objects = ["Linked"]
    scene.collection.objects.link(bpy.data.objects["Linked"])


def outside_files(outside):
    """The canary image, an OBJ and a library .blend, all outside any job dir."""
    os.makedirs(outside, exist_ok=True)
    image = bpy.data.images.new("canary", 8, 8)
    image.pixels = CANARY_RGBA * 64
    image.filepath_raw = os.path.join(outside, "canary.png")
    image.file_format = "PNG"
    image.save()
    with open(os.path.join(outside, "canary.obj"), "w") as obj:
        obj.write("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    bpy.context.active_object.name = "Linked"
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(outside, "library.blend"))


ATTACKS = [autorun_text, python_driver, freestyle_module, osl_script, outside_texture,
           geometry_import, file_output, linked_library]  # fmt: skip


def main():
    root, outside = sys.argv[sys.argv.index("--") + 1:]
    outside_files(outside)
    base_scene()
    save(root, "clean")
    for attack in ATTACKS:
        attack(base_scene(), outside)
        save(root, attack.__name__)


main()
