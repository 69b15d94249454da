"""The Blender runner: backends, guarded and sandboxed renders, inspection, comparison.

See docs/security.md for what a friend rendering someone else's file is
protected from, and design.md section 8 for the shape.
"""

from ._backend import (
    Backend,
    BlenderBackend,
    BlendInfo,
    BpyBackend,
    CliBackend,
    RenderedFrame,
    Session,
    check_device,
    cpu_class,
    find_backend,
    frame_name,
    inspect,
    open_session,
    probe,
    render,
    start_session,
    window_name,
)
from ._denoise import NOISY_TILES, denoise_frame, one_part
from ._crops import CropMeasure, measure_crops, measure_windows
from ._compare import BadImage, Comparison, Tolerance, compare, compare_pixels, decode_png, png_size
from ._errors import (
    BlenderCrashed,
    BlenderError,
    BlenderNotFound,
    GuardRefused,
    MissingDenoiser,
    NewerBlendFile,
    NotABlendFile,
    OutOfMemory,
    RenderTimeout,
)
from ._bounds import check_frame_bytes, max_frame_bytes
from ._formats import PNG8, FloatTolerance, OutputFormat, check_output, compare_output, decode_output, output_name, output_size, unsupported_output
from ._header import BlendHeader, read_blend_header
from ._modelled import ModelledBackend, forge_frame, modelled_frame
from ._runner import Limits
from ._runtimes import NoRuntime, Runtimes, add_runtime, bpy_python, choose_version, held_runtimes, runtimes_dir
from ._sandbox import sandbox_available
from ._scene import build_demo_scene, parse_resolution, scene_command
from ._stitch import BadStitch, stitch, stitchable
from ._jpeg import jpeg_comments, png_text, stitch_jpeg, with_comments
from ._window import CROP_ALIGNMENT, CROP_PADDING, MIN_RENDER_FRACTION, MIN_WINDOW_FRACTION, BadWindow, Window, compare_window, crop_margins, crop_region

__all__ = [
    "NOISY_TILES",
    "denoise_frame",
    "one_part",
    "CropMeasure",
    "measure_crops",
    "measure_windows",
    "check_frame_bytes",
    "check_output",
    "max_frame_bytes",
    "CROP_ALIGNMENT",
    "CROP_PADDING",
    "crop_margins",
    "crop_region",
    "MIN_WINDOW_FRACTION",
    "MIN_RENDER_FRACTION",
    "BadStitch",
    "stitch",
    "stitchable",
    "stitch_jpeg",
    "jpeg_comments",
    "png_text",
    "with_comments",
    "Backend",
    "BadImage",
    "BadWindow",
    "BlendHeader",
    "BlendInfo",
    "BlenderBackend",
    "BlenderCrashed",
    "BlenderError",
    "BlenderNotFound",
    "BpyBackend",
    "CliBackend",
    "Comparison",
    "FloatTolerance",
    "OutputFormat",
    "PNG8",
    "GuardRefused",
    "Limits",
    "MissingDenoiser",
    "ModelledBackend",
    "NewerBlendFile",
    "NotABlendFile",
    "OutOfMemory",
    "RenderTimeout",
    "RenderedFrame",
    "Session",
    "Tolerance",
    "Window",
    "build_demo_scene",
    "compare",
    "compare_pixels",
    "compare_window",
    "compare_output",
    "decode_output",
    "output_name",
    "output_size",
    "unsupported_output",
    "check_device",
    "cpu_class",
    "decode_png",
    "find_backend",
    "forge_frame",
    "frame_name",
    "inspect",
    "modelled_frame",
    "open_session",
    "parse_resolution",
    "png_size",
    "probe",
    "read_blend_header",
    "NoRuntime",
    "Runtimes",
    "add_runtime",
    "bpy_python",
    "choose_version",
    "held_runtimes",
    "runtimes_dir",
    "render",
    "sandbox_available",
    "scene_command",
    "start_session",
    "window_name",
]
