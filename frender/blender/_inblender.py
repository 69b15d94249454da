"""The script fRender runs inside Blender: probe, inspect, guarded render, denoise after a stitch, demo scene.

It runs in a separate Blender process, never in fRender's own: `blender -b ...
-P _inblender.py -- REQUEST` for the CLI backend and `python _inblender.py --
REQUEST` for the bpy backend, where REQUEST is one JSON object with a "mode".
A render ("session" mode) opens and guards the file once, then renders the
batches of frames it reads from stdin, one JSON line each, until EOF.
The same file serves Blender 3.4 to 5.x, so it feature-tests the bpy API
instead of checking versions.

It talks back through whole stdout lines that start with "FRENDER-" (parsed by
`_output.parse_line`); everything else Blender prints is kept as the tail of an
error. Rules:

1. An untrusted file is opened by this script with `use_scripts=False`, after
   auto-execution is switched off in the preferences, never by Blender's command
   line, so both backends load it the same way.
2. The guard runs after the load and before any render or inspection result;
   a render proceeds only when the guard found nothing to refuse. A session
   loads the file once, so one guard covers all its batches.
3. Output settings are forced (the file's own image format into the job's out/
   directory, no burnt-in stamp, no file or host name in the frames' metadata,
   no multiview) before the paths are checked, so
   Blender's own output path is never the thing that escapes the job directory.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, NoReturn

# bpy and all it hands out have no stubs, and the Blenders this script runs in (3.4 to 5.x) differ in them, which
# the code feature-tests: they are foreign values here, typed Any under names that say what each is.
Bpy = Any  # the bpy module
Scene = Any  # a bpy.types.Scene
NodeTree = Any  # a bpy.types.NodeTree
ID = Any  # any other data-block or bpy object (a material, an object, a sequencer strip)
Request = dict[str, Any]  # the request (and a session's batches), as JSON reads it

# Output lines start with "FRENDER-<nonce> ": the nonce comes with the request,
# so text from the file (an object name with a newline in it) cannot forge them.
prefix = "FRENDER- "

# Node types whose only purpose is to run or read something the guard cannot
# confine: OSL scripts compile and run shader code that may read any file, and a
# compositor File Output node writes images to any directory it names.
OSL_SCRIPT_NODE = "ShaderNodeScript"
FILE_OUTPUT_NODE = "CompositorNodeOutputFile"
DENOISE_NODE = "CompositorNodeDenoise"
FILE_PATH_SOCKET = "NodeSocketStringFilePath"


def say(kind: str, *fields: object) -> None:
    """Print one machine-readable line and flush it, so the host sees it now."""
    print(prefix + kind, *fields, flush=True)


def finish(code: int) -> NoReturn:
    """Leave Blender at once with an exit code; `sys.exit` in `-P` is not reliable."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def blender_facts(bpy: Bpy) -> dict[str, object]:
    """What the host needs to know about this Blender build."""
    import _cycles

    # Blender's install, as the sandbox must show it: the executable's folder,
    # its resources and whatever its Python imports from.
    dirs = {os.path.dirname(bpy.app.binary_path or ""), sys.prefix, sys.base_prefix}
    dirs.update(bpy.utils.resource_path(kind) for kind in ("SYSTEM", "LOCAL"))
    dirs.update(path for path in sys.path if os.path.isabs(path))
    build_hash = bpy.app.build_hash
    return {
        "devices": compute_devices(bpy),
        "version": bpy.app.version_string.split()[0],
        "version_tuple": list(bpy.app.version),
        "build_hash": build_hash.decode() if isinstance(build_hash, bytes) else build_hash,
        "has_oidn": bool(_cycles.with_openimagedenoise),
        "install_dirs": sorted(d for d in dirs if d and os.path.isdir(d)),
    }


GPU_DEVICE_TYPES = ("CUDA", "OPTIX", "HIP", "METAL", "ONEAPI")


def compute_devices(bpy: Bpy) -> list[str]:
    """The Cycles device types with at least one device here: always "CPU", then e.g. "CUDA", "OPTIX"."""
    found = ["CPU"]
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except (KeyError, AttributeError):
        return found
    for kind in GPU_DEVICE_TYPES:
        try:
            devices = prefs.get_devices_for_type(kind)
        except (TypeError, ValueError, RuntimeError):  # a type this build does not know
            continue
        if any(device.type == kind for device in devices):
            found.append(kind)
    return found


def use_device(bpy: Bpy, scene: Scene, device: str) -> None:
    """Render on ``device``: "CPU", or every device of one GPU type (Cycles' compute device type)."""
    if getattr(scene, "cycles", None) is None:
        return
    if device == "CPU":
        scene.cycles.device = "CPU"
        return
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.compute_device_type = device
    for each in prefs.get_devices_for_type(device):
        each.use = each.type == device
    scene.cycles.device = "GPU"


def gl_facts(bpy: Bpy) -> dict[str, str]:
    """The GPU/GL renderer this Blender draws EEVEE and Workbench with; empty strings where it has none.

    In background mode Blender starts its GPU backend only for a render that
    needs it, so a Workbench render of the factory scene at 4x4 pixels (about
    2 s with software GL) starts it before ``gpu.platform`` is asked. It
    runs in the sandbox renders run in (which may hide the GPU's devices),
    and opens no untrusted file.
    """
    facts = {"gl_backend": "", "gl_renderer": "", "gl_version": ""}
    try:
        import gpu

        scene = bpy.context.scene
        if bpy.app.background and scene is not None and scene.camera is not None:
            scene.render.engine = "BLENDER_WORKBENCH"
            scene.render.resolution_x = scene.render.resolution_y = 4
            scene.render.resolution_percentage = 100
            bpy.ops.render.render(write_still=False)
        platform = gpu.platform
        getters = {"gl_backend": "backend_type_get", "gl_renderer": "renderer_get", "gl_version": "version_get"}
        for key, name in getters.items():
            getter = getattr(platform, name, None)  # backend_type_get is Blender 3.x-4.x+ only
            if getter is not None:
                facts[key] = " ".join(str(getter()).split())[:256]
    except Exception as error:  # no GPU backend here: such a Blender takes no EEVEE job
        print("fRender: no GL renderer:", " ".join(str(error).split())[:200], file=sys.stderr, flush=True)
    return facts


def open_untrusted(bpy: Bpy, path: str) -> None:
    """Open a .blend with every form of auto-execution off."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)
    except RuntimeError as error:
        say("ERROR", "open", " ".join(str(error).split()))
        finish(3)


def node_trees(bpy: Bpy) -> list[NodeTree]:
    """Every node tree in the file: node groups and the trees embedded in IDs."""
    trees = list(bpy.data.node_groups)
    owners = [bpy.data.materials, bpy.data.worlds, bpy.data.lights, bpy.data.textures]
    owners += [bpy.data.linestyles, bpy.data.scenes]  # scene.node_tree: compositor up to 4.x
    for collection in owners:
        for owner in collection:
            tree = getattr(owner, "node_tree", None)
            if tree is not None:
                trees.append(tree)
    return trees


def inside(path: str, root: str) -> bool:
    """Whether a path, after resolving links, lies inside root."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def python_driver_owners(bpy: Bpy) -> list[str]:
    """Names of data-blocks with a driver that needs Python (not a simple expression)."""
    owners: list[str] = []
    for collection in (bpy.data.objects, bpy.data.materials, bpy.data.scenes, bpy.data.meshes, bpy.data.worlds,
                       bpy.data.cameras, bpy.data.lights, bpy.data.shape_keys, bpy.data.node_groups):
        for block in collection:
            data = getattr(block, "animation_data", None)
            if data is None:
                continue
            for curve in data.drivers:
                driver = curve.driver
                if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                    owners.append(block.name)
                    break
    for tree in node_trees(bpy):
        data = tree.animation_data
        if data is not None and any(c.driver.type == "SCRIPTED" and not c.driver.is_simple_expression for c in data.drivers):
            owners.append(tree.name)
    return owners


def check_path(bpy: Bpy, value: str, root: str, what: str, reasons: list[str]) -> None:
    """Refuse a file path that resolves outside the job directory."""
    if value and not inside(bpy.path.abspath(value), root):
        reasons.append(f"{what} reads {value!r}, outside the job directory")


def guard(bpy: Bpy, job_dir: str) -> list[str]:
    """Every reason to refuse rendering this file; empty means it may render."""
    root = os.path.realpath(job_dir)
    reasons: list[str] = []
    # A linked library must lie inside the job directory (a packed job tree);
    # the requester guards every .blend of the tree, and what the library
    # brings into this file is guarded here with the rest of bpy.data.
    for library in bpy.data.libraries:
        path = bpy.path.abspath(library.filepath, library=library.parent)
        if not inside(path, root):
            reasons.append(f"linked library {library.filepath!r} lies outside the job directory (submit packs it into the job)")
    # Python the file means to run. Auto-execution is off, so it would not run,
    # but then the scene would not render as its author meant: refuse it plainly.
    for text in bpy.data.texts:
        if text.use_module:
            reasons.append(f"auto-run Python script {text.name!r}")
    for owner in python_driver_owners(bpy):
        reasons.append(f"Python driver on {owner!r}")
    for scene in bpy.data.scenes:
        for layer in scene.view_layers:
            settings = layer.freestyle_settings
            if scene.render.use_freestyle and settings.mode == "SCRIPT":
                for module in settings.modules:
                    if module.script is not None:
                        reasons.append(f"Freestyle Python style module {module.script.name!r}")
    for tree in node_trees(bpy):
        for node in tree.nodes:
            where = f"node {node.name!r} in {tree.name!r}"
            if node.bl_idname == OSL_SCRIPT_NODE:
                reasons.append(f"OSL script {where}")
            elif node.bl_idname == FILE_OUTPUT_NODE:
                reasons.append(f"compositor File Output {where} writes files")
            for socket in node.inputs:
                if socket.bl_idname != FILE_PATH_SOCKET:
                    continue
                # A linked path is computed while rendering (from a string node,
                # a modifier input...), so it cannot be checked in advance.
                if socket.is_linked:
                    reasons.append(f"{where} reads a file path computed at render time")
                else:
                    check_path(bpy, socket.default_value, root, where, reasons)
    for obj in bpy.data.objects:
        for modifier in obj.modifiers:
            check_path(bpy, getattr(modifier, "bake_directory", ""), root, f"bake of {obj.name!r}", reasons)
    for path in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
        check_path(bpy, path, root, "the file", reasons)
    return reasons


def denoiser(scene: Scene) -> str | None:
    """The denoiser a Cycles render of this scene will run, or None."""
    cycles = getattr(scene, "cycles", None)
    if scene.render.engine != "CYCLES" or cycles is None or not cycles.use_denoising:
        return None
    return cycles.denoiser or "OPENIMAGEDENOISE"


def needs_oidn(bpy: Bpy, scene: Scene) -> bool:
    """Whether rendering needs OpenImageDenoise (Cycles denoiser or a compositor Denoise node)."""
    if denoiser(scene) == "OPENIMAGEDENOISE":
        return True
    return any(node.bl_idname == DENOISE_NODE for tree in node_trees(bpy) for node in tree.nodes)


# Compositor nodes whose every output pixel depends only on the same pixel of their inputs: a window of
# a frame composited with these equals the same pixels of the whole frame. Anything else (blur, glare,
# filters, lens distortion, a Denoise node, tone mapping and levels that read the whole image) makes a
# crop render differ from the frame near its edges or everywhere.
POINTWISE_COMPOSITOR_NODES = frozenset({
    "R_LAYERS", "COMPOSITE", "VIEWER", "GROUP_INPUT", "GROUP_OUTPUT", "REROUTE", "FRAME",
    "MIX_RGB", "MIX", "CURVE_RGB", "HUECORRECT", "BRIGHTCONTRAST", "HUE_SAT", "GAMMA", "INVERT", "VALTORGB",
    "RGBTOBW", "SEPARATE_COLOR", "COMBINE_COLOR", "SEPRGBA", "COMBRGBA", "SEPARATE_XYZ", "COMBINE_XYZ",
    "MATH", "VECT_MATH", "COLORBALANCE", "EXPOSURE", "ALPHAOVER", "SETALPHA", "PREMULKEY", "MAP_VALUE",
    "MAP_RANGE", "CONVERT_COLORSPACE", "VALUE", "RGB", "CLAMP", "COLORCORRECTION", "CURVE_VEC",
})


def compositor_tree(scene: Scene) -> NodeTree | None:
    """The scene's compositor node tree when compositing is on, else None (Blender 5, and 4.x's use_nodes)."""
    tree = getattr(scene, "compositing_node_group", None)
    if tree is None and getattr(scene, "use_nodes", False):
        tree = getattr(scene, "node_tree", None)
    return tree if scene.render.use_compositing else None


# Compositor nodes that leave a render as it is: a file with only these is not composited.
PASS_THROUGH_COMPOSITOR_NODES = frozenset({"R_LAYERS", "COMPOSITE", "VIEWER", "GROUP_INPUT", "GROUP_OUTPUT", "REROUTE", "FRAME"})


def composited(scene: Scene) -> list[str]:
    """The compositor nodes that change this scene's render (a denoised file's tiles are denoised after the stitch,
    where no compositor runs: such a file is not tiled)."""
    tree = compositor_tree(scene)
    if tree is None:
        return []
    return sorted(node.name for node in tree.nodes if node.type not in PASS_THROUGH_COMPOSITOR_NODES and not node.mute)


def sequencer_strips(scene: Scene) -> list[ID]:
    """The scene's sequencer strips when the sequencer renders them, else an empty list."""
    editor = scene.sequence_editor
    strips = getattr(editor, "strips_all", None) or getattr(editor, "sequences_all", None) if editor is not None else None
    return list(strips or ()) if scene.render.use_sequencer else []


def unrenderable(scene: Scene | None) -> list[str]:
    """Why no frame of this scene can ever render, as Blender would fail each one ("Cannot render, no camera").

    A scene renders from its camera, or from the camera a timeline marker binds
    (Blender switches to it, for every frame). The sequencer, and a compositor
    with no Render Layers node, render without one. A file holding no scene (a
    library file) opens with an empty one, which has no camera either.
    """
    if scene is None:
        return ["the file has no scene to render"]
    if sequencer_strips(scene):
        return []
    reasons: list[str] = []
    if not any(layer.use for layer in scene.view_layers):
        reasons.append(f"no view layer of scene {scene.name!r} is enabled for rendering")
    tree = compositor_tree(scene)
    if tree is not None and not any(node.type == "R_LAYERS" for node in tree.nodes):
        return reasons
    if scene.camera is None and not any(marker.camera is not None for marker in scene.timeline_markers):
        if not scene.objects:
            reasons.append(f"the file has no scene to render (Blender opens it with the empty scene {scene.name!r})")
        else:
            reasons.append(f"scene {scene.name!r} has no camera: set its active camera (Scene Properties > Camera)"
                           " or bind a camera to a timeline marker")
    return reasons


def crop_unsafe(scene: Scene) -> list[str]:
    """Why a window of this scene's frames may differ from the same pixels of a whole frame: the names of
    non-pointwise compositor nodes, and a sequencer with strips. Empty: crop checks are sound."""
    reasons: list[str] = []
    tree = compositor_tree(scene)
    if tree is not None:
        seen: set[str] = set()
        trees = [tree]
        while trees:
            current = trees.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            for node in current.nodes:
                if node.type == "GROUP" and node.node_tree is not None:
                    trees.append(node.node_tree)
                elif node.type not in POINTWISE_COMPOSITOR_NODES and not node.mute:
                    reasons.append(f"compositor node {node.name!r} ({node.type.lower()})")
    if sequencer_strips(scene):
        reasons.append("sequencer strips")
    return sorted(set(reasons))


# The image formats fRender can verify; anything else (video, BMP, DPX...) is refused at inspection.
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "OPEN_EXR", "OPEN_EXR_MULTILAYER")


def output_settings(scene: Scene) -> dict[str, object]:
    """The file's own output: format, depth, colour mode, name and extension, as Blender will write them."""
    render = scene.render
    settings = render.image_settings
    return {
        "media_type": getattr(settings, "media_type", "IMAGE"),
        "file_format": settings.file_format,
        "color_depth": settings.color_depth or "8",
        "color_mode": settings.color_mode,
        "quality": settings.quality,  # JPEG's: a tiled JPEG frame is encoded once, at the file's own quality
        "extension": render.file_extension,
        "name": os.path.basename(render.filepath.replace("\\", "/")),
        "use_file_extension": render.use_file_extension,
    }


def force_output(scene: Scene, out_dir: str, threads: int | None) -> None:
    """Point the render at out_dir in the file's own image format, with nothing burnt into the pixels.

    A format fRender cannot verify (video, BMP...) falls back to 8-bit PNG; the
    requester refuses such files at inspection, so only a file changed since
    would meet this.
    """
    render = scene.render
    if getattr(render.image_settings, "media_type", "IMAGE") == "VIDEO":  # Blender 5.0+
        render.image_settings.media_type = "IMAGE"
    if render.image_settings.file_format not in IMAGE_FORMATS:
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        render.image_settings.color_depth = "8"
    render.use_file_extension = True
    render.use_overwrite = True
    render.use_placeholder = False
    render.use_stamp = False  # burnt-in stamps hold render times: honest renders would differ
    # The metadata stamped into every frame (PNG text, EXR attributes) would name the friend's own
    # job path ("File") and machine ("Hostname"); the artist gets them back, so they stay out.
    render.use_stamp_filename = False
    render.use_stamp_hostname = False
    render.use_multiview = False
    render.filepath = os.path.join(out_dir, "frame_####")
    if threads:
        render.threads_mode = "FIXED"
        render.threads = threads


def missing_files(bpy: Bpy) -> list[dict[str, str]]:
    """Each external file the scene uses that is not on disk, with what uses it."""
    missing: list[dict[str, str]] = []
    kinds = [("image", bpy.data.images), ("font", bpy.data.fonts), ("sound", bpy.data.sounds),
             ("movie clip", bpy.data.movieclips), ("cache", bpy.data.cache_files), ("volume", bpy.data.volumes),
             ("library", bpy.data.libraries)]
    for kind, collection in kinds:
        for item in collection:
            path = getattr(item, "filepath", "")
            if not path or getattr(item, "packed_file", None) is not None:
                continue
            if kind == "image" and item.source not in ("FILE", "SEQUENCE", "MOVIE", "TILED"):
                continue
            if kind == "font" and path == "<builtin>":
                continue
            absolute = bpy.path.abspath(path, library=getattr(item, "library", None))
            if kind == "image" and item.source in ("SEQUENCE", "TILED"):
                folder = os.path.dirname(absolute)
                exists = os.path.isdir(folder) and bool(os.listdir(folder))
            else:
                exists = os.path.exists(absolute)
            if not exists:
                missing.append({"path": path, "used_by": f"{kind} {item.name!r}"})
    return missing


def file_lists(bpy: Bpy) -> tuple[list[str], list[str]]:
    """The external files the scene reads and the names of those packed into it."""
    external = sorted(set(bpy.utils.blend_paths(absolute=True, packed=False, local=False)))
    packed: list[str] = []
    for collection in (bpy.data.images, bpy.data.fonts, bpy.data.sounds, bpy.data.volumes):
        packed += [item.name for item in collection if getattr(item, "packed_file", None)]
    return external, sorted(packed)


def inspect(bpy: Bpy, request: Request) -> None:
    """Describe the file for a requester, including what the guard would refuse."""
    scene = bpy.context.scene
    render = scene.render
    cycles = getattr(scene, "cycles", None)
    external, packed = file_lists(bpy)
    say("INFO", json.dumps({
        "saved_with": ".".join(str(n) for n in bpy.data.version),
        "scene": scene.name,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "fps": render.fps / render.fps_base,
        "resolution": [
            render.resolution_x * render.resolution_percentage // 100,
            render.resolution_y * render.resolution_percentage // 100,
        ],
        "engine": render.engine,
        "samples": cycles.samples if cycles is not None and render.engine == "CYCLES" else None,
        "denoiser": denoiser(scene),
        "crop_unsafe": crop_unsafe(scene),
        "composited": composited(scene),
        "external_files": external,
        "output": output_settings(scene),
        "missing": missing_files(bpy),
        "packed_files": packed,
        "refusals": guard(bpy, request["job_dir"]),
        "unrenderable": unrenderable(scene),
    }))


def prepare_render(bpy: Bpy, request: Request) -> Scene:
    """Force the output settings, then guard the file; stop unless it may render here."""
    scene = bpy.context.scene
    force_output(scene, request["out_dir"], request.get("threads"))
    use_device(bpy, scene, request.get("device", "CPU"))
    reasons = guard(bpy, request["job_dir"])
    if reasons:
        for reason in reasons:
            say("REFUSED", reason)
        finish(4)
    import _cycles

    if needs_oidn(bpy, scene) and not _cycles.with_openimagedenoise:
        say("ERROR", "denoiser", "the file asks for OpenImageDenoise, which this Blender lacks")
        finish(5)
    return scene


def frame_size(scene: Scene) -> tuple[int, int]:
    """The rendered frame's width and height in pixels (resolution scaled by its percentage)."""
    render = scene.render
    percentage = render.resolution_percentage
    return render.resolution_x * percentage // 100, render.resolution_y * percentage // 100


BORDER_SETTINGS = ("use_border", "use_crop_to_border", "border_min_x", "border_max_x", "border_min_y", "border_max_y")


def set_window(scene: Scene, window: list[int], in_place: bool = False) -> None:
    """Render only `window` ([left, top, width, height] in pixels from the top-left corner), cropped to it
    (`in_place`: not cropped, the whole frame's image with only the window rendered).

    Blender's border is a fraction of the frame with rows counted from the
    bottom, and Blender truncates fraction x size to whole pixels: each edge is
    set half a pixel in, so it truncates to exactly the pixel asked for.
    """
    render = scene.render
    width, height = frame_size(scene)
    left, top, w, h = (int(n) for n in window)
    if w < 1 or h < 1 or left < 0 or top < 0 or left + w > width or top + h > height:
        raise ValueError(f"window {window} is not inside the {width}x{height} frame")
    render.use_border = True
    render.use_crop_to_border = not in_place
    render.border_min_x = (left + 0.5) / width
    render.border_max_x = min((left + w + 0.5) / width, 1.0)
    render.border_min_y = (height - top - h + 0.5) / height
    render.border_max_y = min((height - top + 0.5) / height, 1.0)


def render_frames(
    bpy: Bpy, scene: Scene, pattern: str, frames: list[int], window: list[int] | None = None, in_place: bool = False, lossless: bool = False
) -> None:
    """Render frames (or a window of each) one by one, announcing each file as it is saved.

    A window is rendered to files of its own (window_####.png), so it never
    passes for the frame; the file's own border settings are restored after it.
    `lossless`: written as 8-bit PNG in the file's colour mode (a tile of a JPEG frame, encoded once when stitched).
    """
    saved = {name: getattr(scene.render, name) for name in BORDER_SETTINGS}
    image = scene.render.image_settings
    kept = (image.file_format, image.color_depth)
    names = pattern
    if window is not None:
        names = os.path.join(os.path.dirname(pattern), "window_####")
        set_window(scene, window, in_place)
    if lossless:
        image.file_format, image.color_depth = "PNG", "8"
    try:
        for frame in frames:
            # A still render does not expand "####" (Blender 5.0 writes the
            # literal name), so each frame gets its already-numbered path.
            scene.render.filepath = names
            path = scene.render.frame_path(frame=frame)
            scene.render.filepath = path
            scene.frame_set(frame)
            start = time.perf_counter()
            bpy.ops.render.render(write_still=True)
            seconds = time.perf_counter() - start
            say("FRAME", frame, f"{seconds:.4f}", path)
    finally:
        for name, value in saved.items():
            setattr(scene.render, name, value)
        if lossless:
            image.file_format, image.color_depth = kept
        scene.render.filepath = pattern


def render_noisy(scene: Scene) -> None:
    """Render as a denoised file's tile is rendered (the requester denoises the stitched frame once, ``denoise``):
    Cycles' denoiser off, its denoising passes (albedo, normal) stored, every pass as multilayer half-float OpenEXR
    (``_denoise.NOISY_TILES``)."""
    scene.cycles.use_denoising = False
    for layer in scene.view_layers:
        layer.cycles.denoising_store_passes = True
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5: multilayer is a media type of its own
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "16"
    settings.color_mode = "RGBA"
    settings.exr_codec = "ZIP"


def denoise(bpy: Bpy, request: Request) -> None:
    """Denoise a stitched noisy frame once with the file's own denoiser settings (Cycles' file denoiser, Render >
    Denoise Animation's: denoiser, prefilter, quality, passes), then save it as the file's own output format would be
    written (its view transform, depth and colour mode)."""
    scene = bpy.context.scene
    force_output(scene, request["out_dir"], request.get("threads"))  # no stamp, no file or host name in the frame
    reasons = guard(bpy, request["job_dir"])
    if reasons:
        for reason in reasons:
            say("REFUSED", reason)
        finish(4)
    import _cycles

    if not _cycles.with_openimagedenoise:
        say("ERROR", "denoiser", "the file asks for OpenImageDenoise, which this Blender lacks")
        finish(5)
    scene.cycles.use_denoising = True
    bpy.ops.cycles.denoise_animation(input_filepath=request["input"], output_filepath=request["denoised"])
    image = bpy.data.images.load(request["denoised"])
    image.save_render(request["output"], scene=scene)
    say("INFO", json.dumps({"saved": request["output"]}))


def serve(bpy: Bpy, request: Request) -> None:
    """Session mode: after one load and one guard, render batches read from stdin until EOF.

    Each batch is one JSON line, {"frames": [...]}; each ends with a BATCH line
    carrying how many batches this process has rendered. EOF (the host closed
    the pipe, or died) ends the loop, and the process.
    """
    scene = prepare_render(bpy, request)
    if request.get("noisy"):
        render_noisy(scene)
    pattern = scene.render.filepath
    say("READY", json.dumps({"resolution": list(frame_size(scene)), "extension": scene.render.file_extension}))
    count = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        batch = json.loads(line)
        render_frames(bpy, scene, pattern, batch["frames"], batch.get("window"), bool(batch.get("in_place")), bool(batch.get("lossless")))
        count += 1
        say("BATCH", count)


def encode_jpeg(bpy: Bpy, request: Request) -> None:
    """Encode an 8-bit PNG (a stitched frame) as JPEG with Blender's own writer at the file's quality: the same
    encoder and settings a whole render's JPEG is written with, so the same pixels give the same image data.

    The PNG's pixels are already display-referred: `Image.save` writes them as they are (no view transform)."""
    image = bpy.data.images.load(request["source"])
    if image.size[0] < 1:  # reading its size loads the image: a format set before then is lost to the file's own
        raise ValueError(f"{request['source']} does not load")
    image.file_format = "JPEG"
    if image.file_format != "JPEG":
        raise ValueError("Blender kept the PNG format")
    image.save(filepath=request["out"], quality=int(request["quality"]))


def build_scene(bpy: Bpy, request: Request) -> None:
    """Build the bundled demo scene: every frame visibly differs from every other."""
    import math

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    frames = request["frames"]
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = request["samples"]
    scene.cycles.use_denoising = bool(request.get("denoise", False))
    scene.cycles.use_adaptive_sampling = False  # a fixed sample count renders in a predictable time
    scene.render.resolution_x, scene.render.resolution_y = request["resolution"]
    scene.render.resolution_percentage = 100
    if request.get("exr"):  # full float precision: what calibration hashes
        scene.render.image_settings.file_format = "OPEN_EXR"
        scene.render.image_settings.color_depth = "32"

    def material(name: str, color: tuple[float, float, float, float], checker: bool = False) -> ID:
        mat = bpy.data.materials.new(name)
        mat.use_nodes = True
        nodes = mat.node_tree.nodes
        bsdf = nodes["Principled BSDF"]
        if checker:  # a checkered floor turns any camera motion into many changed pixels
            tex = nodes.new("ShaderNodeTexChecker")
            tex.inputs["Scale"].default_value = 8.0
            tex.inputs["Color1"].default_value = color
            tex.inputs["Color2"].default_value = (0.9, 0.9, 0.85, 1.0)
            mat.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        else:
            bsdf.inputs["Base Color"].default_value = color
        return mat

    def add(mesh_op: Callable[..., object], name: str, mat: ID, **kwargs: object) -> ID:
        mesh_op(**kwargs)
        obj = bpy.context.active_object
        obj.name = name
        obj.data.materials.append(mat)
        return obj

    ops = bpy.ops.mesh
    add(ops.primitive_plane_add, "Floor", material("Floor", (0.1, 0.2, 0.6, 1), checker=True), size=12)
    cube = add(ops.primitive_cube_add, "Cube", material("Red", (0.8, 0.1, 0.05, 1)), size=1.2,
               location=(-1.2, 0, 0.6))
    ball = add(ops.primitive_uv_sphere_add, "Ball", material("Yellow", (0.9, 0.7, 0.1, 1)), radius=0.6,
               location=(1.2, 0.4, 0.6))
    add(ops.primitive_cone_add, "Cone", material("Green", (0.1, 0.6, 0.2, 1)), radius1=0.5, depth=1.4,
        location=(0, -1.4, 0.7))

    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6), rotation=(0.7, 0.2, 0.6))
    bpy.context.active_object.data.energy = 3.0
    bpy.ops.object.light_add(type="POINT", location=(-2, 2, 3))
    bpy.context.active_object.data.energy = 300.0

    world = bpy.data.worlds.new("Sky")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.4, 0.6, 1)
    scene.world = world

    bpy.ops.object.empty_add(location=(0, 0, 0.5))
    target = bpy.context.active_object
    bpy.ops.object.camera_add()
    camera = bpy.context.active_object
    scene.camera = camera
    track = camera.constraints.new("TRACK_TO")
    track.target = target
    # One keyframe per frame: the camera circles once over the animation, the
    # cube spins and the ball bounces, so no two frames share a view.
    for frame in range(1, frames + 1):
        turn = 2 * math.pi * (frame - 1) / frames
        camera.location = (7 * math.cos(turn), 7 * math.sin(turn), 3.5)
        camera.keyframe_insert("location", frame=frame)
        cube.rotation_euler = (0, 0, 3 * turn)
        cube.keyframe_insert("rotation_euler", frame=frame)
        ball.location.z = 0.6 + 1.2 * abs(math.sin(3 * turn))
        ball.keyframe_insert("location", frame=frame)
    bpy.ops.wm.save_as_mainfile(filepath=request["out"])


def main() -> None:
    """Run the request given after `--` on the command line."""
    args = sys.argv[sys.argv.index("--") + 1:]
    request = json.loads(args[0])
    global prefix
    prefix = f"FRENDER-{request['nonce']} "
    import bpy

    mode = request["mode"]
    if mode == "probe":
        say("PROFILE", json.dumps(blender_facts(bpy)))
    elif mode == "gl":
        say("PROFILE", json.dumps(gl_facts(bpy)))
    elif mode == "scene":
        build_scene(bpy, request)
    elif mode == "encode":
        encode_jpeg(bpy, request)
    else:
        open_untrusted(bpy, request["blend"])
        if mode == "inspect":
            inspect(bpy, request)
        elif mode == "denoise":
            denoise(bpy, request)
        else:
            serve(bpy, request)
    say("DONE")
    finish(0)


if __name__ == "__main__":
    main()
