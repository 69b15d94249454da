"""What an artist asks for, read the way Blender reads it: frames, output format and names.

Pure functions shared by the client (parsing ``--frames``, naming files in
OUT) and the requester (checking a submit against the inspected file):

- frames are ``A``, ``A-B``, ``A-BxS`` (every S-th frame from A) and comma lists
  of these (``1,5,10-20x2``); the default is the file's own range and step;
- a frame outside the file's range is refused unless the artist allows it;
- a file's output must be an image format fRender can verify (not a video);
- a file that can never render (no camera, no scene) is refused, saying why;
- a file whose dependencies are not all there is refused, naming each one
  and what uses it, unless the artist allows it;
- frames are named as the file's output path names them (``shot_####.exr`` ->
  ``shot_0001.exr``), or by the artist's own pattern; a name that is not a plain
  file name falls back to ``frame_####``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from attrs import frozen

from frender import blender
from frender.blender._formats import VALID_EXTENSIONS

__all__ = ["Accepted", "RequestRefused", "check_request", "frame_file", "frame_ranges", "parse_frames"]

MAX_LISTED = 8  # missing files named in one refusal; the rest are counted
PART = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$")


class RequestRefused(ValueError):
    """A submit that cannot be taken as asked; ``code`` and ``reason`` go back to the client."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_frames(text: str) -> tuple[int, ...]:
    """Frames in Blender's words: "7", "1-10", "1-10x2", "1,5,10-20"; in the order given, once each."""
    frames: list[int] = []
    for part in text.replace(" ", "").split(","):
        match = PART.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not a frame, A-B or A-BxSTEP")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3) or 1)
        if last < first or step < 1:
            raise ValueError(f"{part!r} is an empty range")
        frames.extend(f for f in range(first, last + 1, step) if f not in frames)
    return tuple(frames)


def frame_ranges(frames: Sequence[int]) -> str:
    """Frames in Blender's words, as ``parse_frames`` reads them: (1, 2, 3, 5, 7, 9, 20) -> "1-3,5-9x2,20"."""
    ordered = sorted(set(frames))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        step = ordered[i + 1] - ordered[i] if i + 1 < len(ordered) else 0
        j = i + 1
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == step:
            j += 1
        if j - i >= 2 or (j - i == 1 and step == 1):
            parts.append(f"{ordered[i]}-{ordered[j]}" + (f"x{step}" if step > 1 else ""))
            i = j + 1
        else:
            parts.append(str(ordered[i]))
            i += 1
    return ",".join(parts)


@frozen(kw_only=True)
class Accepted:
    """A submit checked against its file: the frames to render and how they come back."""

    frames: tuple[int, ...]
    output: blender.OutputFormat
    name: str  # last part of the file's output path, "frame_####" when it names none
    extension: str  # "" when the file turns Blender's extensions off


def check_request(
    info: blender.BlendInfo, frames: tuple[int, ...], *, allow_outside: bool, allow_missing: bool
) -> Accepted:
    """The job a submit asks for, or RequestRefused saying plainly why not."""
    if info.unrenderable:
        raise RequestRefused("cannot-render", "the file cannot render: " + "; ".join(info.unrenderable))
    out = info.output or {}
    why = blender.unsupported_output(str(out.get("media_type", "IMAGE")), str(out.get("file_format", "PNG")))
    if why is not None:
        raise RequestRefused("unsupported-output", why)
    if info.missing and not allow_missing:
        listed = [f"{path} (used by {user})" for path, user in info.missing[:MAX_LISTED]]
        more = len(info.missing) - len(listed)
        raise RequestRefused(
            "missing-files",
            "missing files: " + "; ".join(listed) + (f"; and {more} more" if more > 0 else "")
            + " (submit with allow-missing to render without them)",
        )
    step = max(info.frame_step, 1)
    frames = frames or tuple(range(info.frame_start, info.frame_end + 1, step))
    outside = [f for f in frames if not info.frame_start <= f <= info.frame_end]
    if outside and not allow_outside:
        shown = ", ".join(str(f) for f in outside[:MAX_LISTED]) + (" ..." if len(outside) > MAX_LISTED else "")
        shown = f"frame {shown} lies" if len(outside) == 1 else f"frames {shown} lie"
        raise RequestRefused(
            "outside-range",
            f"{shown} outside the file's range {info.frame_start}-{info.frame_end} (allow-outside renders them)",
        )
    fmt = blender.OutputFormat(
        file_format=str(out.get("file_format", "PNG")),
        color_depth=str(out.get("color_depth") or "8"),
        color_mode=str(out.get("color_mode", "RGBA")),
        quality=int(out.get("quality") or 90),
    )
    name = str(out.get("name") or "")
    if not _plain(name):
        name = "frame_####"
    extension = fmt.extension if out.get("use_file_extension", True) else ""
    return Accepted(frames=frames, output=fmt, name=name, extension=extension)


def _plain(name: str) -> bool:
    """A name that can only ever be a file in OUT: no folder, no parent, nothing hidden, nothing odd."""
    return bool(name) and len(name) <= 200 and re.fullmatch(r"[\w#][\w#.\- ]*", name) is not None and ".." not in name


def frame_file(name: str, frame: int, extension: str) -> str:
    """The file name of `frame` in OUT, by Blender's rules (see `blender.output_name`)."""
    if not _plain(name):
        raise ValueError(f"{name!r} is not a plain file name pattern")
    valid = next((exts for exts in VALID_EXTENSIONS.values() if extension in exts), ())
    return blender.output_name(name, frame, extension or None, valid=valid)
