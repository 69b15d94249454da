"""Why a Blender run failed: one exception class per cause a friend can act on.

Each error's message is one line; `.tail` holds Blender's last output lines, so
a log shows what Blender itself said.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BlenderCrashed",
    "BlenderError",
    "BlenderNotFound",
    "GuardRefused",
    "MissingDenoiser",
    "NewerBlendFile",
    "NotABlendFile",
    "OutOfMemory",
    "RenderTimeout",
]


class BlenderError(Exception):
    """A Blender run that did not produce what was asked, with Blender's last lines."""

    def __init__(self, message: str, tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tail: list[str] = list(tail)


class BlenderNotFound(BlenderError):
    """Neither the bpy module nor a blender executable is available."""


class NotABlendFile(BlenderError):
    """The file is not a .blend file, or Blender could not read it as one."""


class NewerBlendFile(BlenderError):
    """The file was saved by a newer Blender than the one that would render it."""


class MissingDenoiser(BlenderError):
    """The file asks for OpenImageDenoise, which this Blender build lacks."""


class BlenderCrashed(BlenderError):
    """Blender stopped with an error or a signal before finishing."""


class RenderTimeout(BlenderError):
    """Blender ran past its wall-clock limit and was killed."""


class OutOfMemory(BlenderError):
    """Blender ran out of memory under its limit (or was killed by the kernel for it)."""


class GuardRefused(BlenderError):
    """The guard found something in the file that a render must not run or read."""

    def __init__(self, reasons: Sequence[str], tail: Sequence[str] = ()) -> None:
        super().__init__("refused: " + "; ".join(reasons), tail)
        self.reasons: list[str] = list(reasons)
