"""Parsing Blender's output and deciding a run's outcome: pure, table-driven."""

from __future__ import annotations

import pytest

from frender.blender import (
    BlenderCrashed,
    GuardRefused,
    Limits,
    MissingDenoiser,
    NotABlendFile,
    OutOfMemory,
    RenderTimeout,
)
from frender.blender._output import (
    BatchDone,
    BlenderSaved,
    Done,
    ErrorLine,
    Failed,
    FrameSaved,
    MemoryExhausted,
    Progress,
    Ready,
    Refused,
    Reported,
    parse_line,
)
from frender.blender._runner import failure

N = "ab12"

LINES = [
    (f"FRENDER-{N} FRAME 12 0.3100 /job/out/frame_0012.png\n", FrameSaved(12, 0.31, "/job/out/frame_0012.png")),
    (f"FRENDER-{N} FRAME -3 1.5 /job dir/out/frame_-0003.png", FrameSaved(-3, 1.5, "/job dir/out/frame_-0003.png")),
    (f"FRENDER-{N} REFUSED linked library '//lib.blend'", Refused("linked library '//lib.blend'")),
    (f"FRENDER-{N} ERROR open Error: cannot read", Failed("open", "Error: cannot read")),
    (f'FRENDER-{N} INFO {{"engine": "CYCLES"}}', Reported("INFO", {"engine": "CYCLES"})),
    (f"FRENDER-{N} DONE", Done()),
    (f"FRENDER-{N} READY", Ready()),
    (f"FRENDER-{N} BATCH 3", BatchDone(3)),
    (f"FRENDER-{N} BATCH three", None),
    ("FRENDER-0000 BATCH 1", None),
    (f"FRENDER-{N} FRAME twelve 0.3 /x", None),  # malformed: ignored
    (f"FRENDER-{N} INFO {{not json", None),
    ("FRENDER-0000 FRAME 1 0.1 /etc/passwd", None),  # wrong nonce: forged by the file
    ("Fra:12 Mem:10.21M (Peak 10.39M) | Time:00:00.01 | Sample 4/4", Progress(12)),
    ("Fra:-2 Mem:1M", Progress(-2)),
    ("Saved: '/job/out/frame_0001.png'", BlenderSaved("/job/out/frame_0001.png")),
    ("00:00.367  render           | Saved: '/job/out/frame_0001.png'", BlenderSaved("/job/out/frame_0001.png")),
    ("Error: File format is not supported", ErrorLine("File format is not supported")),
    ("Error: Malloc returns null: len=12345", MemoryExhausted("Error: Malloc returns null: len=12345")),
    ("ImportError: liboslexec.so: failed to map segment from shared object",
     MemoryExhausted("ImportError: liboslexec.so: failed to map segment from shared object")),
    ("terminate called after throwing an instance of 'std::bad_alloc'",
     MemoryExhausted("terminate called after throwing an instance of 'std::bad_alloc'")),
    ("Read blend: /job/scene.blend", None),
    ("", None),
]  # fmt: skip


@pytest.mark.parametrize(("line", "event"), LINES)
def test_parse_line(line, event):
    """Each kind of output line maps to its event; others to None."""
    assert parse_line(line, N) == event


LIMITS = Limits(wall_seconds=10, memory_bytes=2**30)
OUTCOMES = [
    ([Done()], 0, False, None),
    ([Done()], 0, True, RenderTimeout),
    ([Refused("OSL script")], 4, False, GuardRefused),
    ([Failed("open", "Missing DNA block")], 3, False, NotABlendFile),
    ([Failed("denoiser", "no OIDN")], 5, False, MissingDenoiser),
    ([MemoryExhausted("Malloc returns null")], -11, False, OutOfMemory),
    ([], -9, False, OutOfMemory),  # SIGKILL we did not send: the kernel's OOM killer
    ([], 137, False, OutOfMemory),  # the same, reported through bwrap
    ([ErrorLine("boom")], 1, False, BlenderCrashed),
    ([], -11, False, BlenderCrashed),
    ([Progress(1)], 0, False, BlenderCrashed),  # exited 0 without finishing
]


@pytest.mark.parametrize(("events", "returncode", "timed_out", "error"), OUTCOMES)
def test_failure(events, returncode, timed_out, error):
    """A run's events and exit status decide its error class (or none)."""
    result = failure(events, returncode, ["last line"], timed_out=timed_out, limits=LIMITS)
    if error is None:
        assert result is None
    else:
        assert type(result) is error
        assert result.tail == ["last line"] and "\n" not in str(result)
