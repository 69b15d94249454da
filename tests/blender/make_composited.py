"""Give a .blend a compositor: ``python -E -P make_composited.py -- IN OUT KIND`` (KIND: glare or bright).

Glare (fog glow) reads the whole image to draw each pixel; Brightness/Contrast
reads only its own pixel. Saved to OUT for the crop checks' tests.
"""

import sys

import bpy

source, out, kind = sys.argv[sys.argv.index("--") + 1 :]
bpy.ops.wm.open_mainfile(filepath=source)
scene = bpy.context.scene
tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
scene.compositing_node_group = tree
node = tree.nodes.new({"glare": "CompositorNodeGlare", "bright": "CompositorNodeBrightContrast"}[kind])
if kind == "glare":
    node.inputs["Threshold"].default_value = 0.2
tree.links.new(tree.nodes.new("CompositorNodeRLayers").outputs["Image"], node.inputs[0])
tree.links.new(node.outputs[0], tree.nodes.new("NodeGroupOutput").inputs[0])
bpy.ops.wm.save_as_mainfile(filepath=out)
