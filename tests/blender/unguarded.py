"""Open (and render) a fixture WITHOUT fRender's guard, to prove the attack does harm.

Usage: python unguarded.py BLEND OUT_PNG AUTOEXEC(0|1)

Run only by the tests, inside temporary directories: it shows what each
malicious fixture would do to a friend who opened it with plain Blender.
"""

import sys

import bpy

blend, out_png, autoexec = sys.argv[sys.argv.index("--") + 1:]
bpy.context.preferences.filepaths.use_scripts_auto_execute = autoexec == "1"
bpy.ops.wm.open_mainfile(filepath=blend, use_scripts=autoexec == "1")
scene = bpy.context.scene
scene.frame_set(scene.frame_start)
cube = bpy.data.objects["Cube"].evaluated_get(bpy.context.evaluated_depsgraph_get())
print("VERTICES", len(cube.data.vertices), flush=True)
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = out_png
bpy.ops.render.render(write_still=True)
