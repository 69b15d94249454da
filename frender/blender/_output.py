"""Parsing what Blender prints: a pure function from one line to one event.

Blender's own lines ("Fra:12 Mem:...", "Saved: '...'", "Error: ...") are
informative only; the facts fRender acts on come from the lines that
`_inblender.py` prints, "FRENDER-<nonce> KIND ...". The nonce is drawn per run
and never written into the file, so a scene cannot print a line that passes for
one of ours (object names may contain newlines).
"""

from __future__ import annotations

import json
import re
from typing import Any

from attrs import frozen

__all__ = [
    "BatchDone",
    "BlenderSaved",
    "Done",
    "ErrorLine",
    "Failed",
    "FrameSaved",
    "MemoryExhausted",
    "OutputEvent",
    "Progress",
    "Ready",
    "Refused",
    "Reported",
    "parse_line",
]


@frozen
class FrameSaved:
    """The driver rendered and saved a frame."""

    frame: int
    seconds: float
    path: str


@frozen
class Refused:
    """The guard refuses the file, for this reason."""

    reason: str


@frozen
class Failed:
    """The driver stopped for a known cause: "open" (unreadable file) or "denoiser"."""

    kind: str
    message: str


@frozen
class Reported:
    """The driver reported a JSON object: "PROFILE" or "INFO"."""

    kind: str
    payload: Any


@frozen
class Done:
    """The driver finished its request."""


@frozen
class Ready:
    """Session mode: the file is open and guarded; the driver waits for batches on stdin.

    `resolution` is the rendered frame's size, which windows are checked against.
    """

    resolution: tuple[int, int] | None = None

    extension: str = ".png"  # of the frames it will save, in the file's own format


@frozen
class BatchDone:
    """Session mode: the driver finished a batch, its `count`-th in this process."""

    count: int


@frozen
class Progress:
    """Blender is rendering this frame (its "Fra:" status line)."""

    frame: int


@frozen
class BlenderSaved:
    """Blender's own "Saved: '...'" line."""

    path: str


@frozen
class ErrorLine:
    """Blender printed an error."""

    message: str


@frozen
class MemoryExhausted:
    """An allocation failed: Blender's guarded allocator, C++ or Python said so."""

    line: str


OutputEvent = (
    FrameSaved | Refused | Failed | Reported | Done | Ready | BatchDone | Progress | BlenderSaved | ErrorLine
    | MemoryExhausted
)

# Blender 4.2+ prefixes its log lines with a clock and a channel: "00:00.493  render  | ".
LOG_PREFIX = re.compile(r"^\d\d:\d\d\.\d+\s+\S+\s+\|\s")
PROGRESS = re.compile(r"^Fra:(-?\d+) ")
SAVED = re.compile(r"^Saved: '(.*)'")
ERROR = re.compile(r"^(?:Error|ERROR)(?: \(\w+\))?: ?(.*)")
MEMORY = re.compile(
    r"Malloc returns null|Calloc returns null|std::bad_alloc|MemoryError|[Oo]ut of memory"
    r"|failed to map segment|Cannot allocate memory"  # RLIMIT_AS hit while loading libraries
)


def parse_line(line: str, nonce: str) -> OutputEvent | None:
    """The event one output line stands for, or None for an ordinary line."""
    line = line.rstrip("\r\n")
    ours = f"FRENDER-{nonce} "
    if nonce and line.startswith(ours):
        return _parse_ours(line[len(ours):])
    if MEMORY.search(line):
        return MemoryExhausted(line)
    line = LOG_PREFIX.sub("", line)
    if match := PROGRESS.match(line):
        return Progress(int(match.group(1)))
    if match := SAVED.match(line):
        return BlenderSaved(match.group(1))
    if match := ERROR.match(line):
        return ErrorLine(match.group(1))
    return None


def _parse_ours(rest: str) -> OutputEvent | None:
    kind, _, fields = rest.partition(" ")
    try:
        match kind:
            case "FRAME":
                frame, seconds, path = fields.split(" ", 2)
                return FrameSaved(int(frame), float(seconds), path)
            case "REFUSED":
                return Refused(fields)
            case "ERROR":
                failure, _, message = fields.partition(" ")
                return Failed(failure, message)
            case "PROFILE" | "INFO":
                return Reported(kind, json.loads(fields))
            case "DONE":
                return Done()
            case "READY":
                if not fields:
                    return Ready()
                ready = json.loads(fields)
                if not {"resolution", "extension"} & ready.keys():
                    return None  # garbled: it names nothing a session reads
                extension = ready.get("extension", ".png")
                if not re.fullmatch(r"\.[a-z0-9]{1,5}", extension):
                    return None
                resolution = ready.get("resolution")
                if resolution is None:
                    return Ready(extension=extension)
                width, height = resolution
                return Ready((int(width), int(height)), extension)
            case "BATCH":
                return BatchDone(int(fields))
    except (ValueError, KeyError, TypeError):  # also json.JSONDecodeError
        return None
    return None
