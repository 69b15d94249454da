"""Running `_inblender.py` in one Blender process: limits, streaming, outcome.

Rules:

1. One process per request, in its own session, so cancelling (the caller's
   or the wall-clock limit's) stops the whole process group: SIGTERM, a grace
   period, then SIGKILL, shielded so it completes even while being cancelled.
2. Output is read line by line as Blender prints it and each recognised event
   is handed over at once; the last lines are kept for error messages.
3. Which error a finished run raises is decided by `failure`, a pure function
   of what the run printed and how it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import trio
from attrs import frozen

from ._errors import (
    BlenderCrashed,
    BlenderError,
    GuardRefused,
    MissingDenoiser,
    NotABlendFile,
    OutOfMemory,
    RenderTimeout,
)
from ._output import Done, ErrorLine, Failed, MemoryExhausted, OutputEvent, Refused, parse_line
from ._sandbox import bwrap_prefix, clean_environment, limit_resources

__all__ = ["Limits"]

TAIL_LINES = 20
MAX_LINE_BYTES = 16 * 1024  # a longer line is cut into pieces rather than buffered whole
GiB = 2**30


@frozen(kw_only=True)
class Limits:
    """Bounds on one Blender process: wall-clock seconds and address space."""

    wall_seconds: float = 3600.0
    memory_bytes: int | None = 8 * GiB
    grace_seconds: float = 2.0  # between SIGTERM and SIGKILL


@frozen(kw_only=True)
class Sandbox:
    """Where a sandboxed run may look: the job directory and Blender's install."""

    job_dir: Path
    job_writable: bool
    install_dirs: tuple[str, ...]


@contextlib.contextmanager
def staged_script() -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A private run directory holding `_inblender.py`, and the clean environment around it."""
    with tempfile.TemporaryDirectory(prefix="frender-run-") as tmp:
        run_dir = Path(tmp)
        script = run_dir / "inblender.py"
        script.write_text(resources.files(__package__).joinpath("_inblender.py").read_text())
        yield run_dir, script, clean_environment(run_dir)


async def run_inblender(
    command: Callable[[str, str], list[str]],
    request: dict[str, Any],
    *,
    cwd: Path,
    limits: Limits,
    sandbox: Sandbox | None,
    on_event: Callable[[OutputEvent], Awaitable[None]] | None = None,
) -> list[OutputEvent]:
    """Run one request through `_inblender.py`; return its events or raise its BlenderError.

    `command(script, request_json)` is the backend's command line.
    """
    nonce = secrets.token_hex(8)
    with staged_script() as (run_dir, script, env):
        argv = command(str(script), json.dumps({**request, "nonce": nonce}))
        if sandbox is not None:
            argv = bwrap_prefix(
                run_dir=run_dir,
                job_dir=sandbox.job_dir,
                job_writable=sandbox.job_writable,
                install_dirs=sandbox.install_dirs,
            ) + argv
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=limit_resources(limits.memory_bytes),
        )
        events: list[OutputEvent] = []
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        try:
            with trio.move_on_after(limits.wall_seconds) as deadline:
                assert process.stdout is not None
                async for line in _lines(process.stdout):
                    tail.append(line)
                    if (event := parse_line(line, nonce)) is not None:
                        events.append(event)
                        if on_event is not None:
                            await on_event(event)
                await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process, limits.grace_seconds)
    error = failure(events, process.returncode, list(tail), timed_out=deadline.cancelled_caught, limits=limits)
    if error is not None:
        raise error
    return events


def failure(
    events: Sequence[OutputEvent], returncode: int, tail: list[str], *, timed_out: bool, limits: Limits
) -> BlenderError | None:
    """The error a run that printed `events` and ended with `returncode` stands for, if any."""
    if timed_out:
        return RenderTimeout(f"Blender ran past its wall-clock limit of {limits.wall_seconds:g} s", tail)
    if reasons := [event.reason for event in events if isinstance(event, Refused)]:
        return GuardRefused(reasons, tail)
    for event in events:
        if isinstance(event, Failed) and event.kind == "open":
            return NotABlendFile(f"Blender could not read the file: {event.message}", tail)
        if isinstance(event, Failed) and event.kind == "denoiser":
            return MissingDenoiser(event.message, tail)
    # bwrap reports a child killed by signal N as exit status 128 + N.
    killed = returncode == -signal.SIGKILL or returncode == 128 + signal.SIGKILL
    if any(isinstance(event, MemoryExhausted) for event in events) or (returncode != 0 and killed):
        limit = "no limit" if limits.memory_bytes is None else f"limit {limits.memory_bytes / GiB:g} GiB"
        return OutOfMemory(f"Blender ran out of memory ({limit})", tail)
    if returncode != 0:
        errors = [event.message for event in events if isinstance(event, ErrorLine)]
        said = errors[-1] if errors else (tail[-1] if tail else "no output")
        return BlenderCrashed(f"Blender exited with {_describe(returncode)}: {said}", tail)
    if not any(isinstance(event, Done) for event in events):
        return BlenderCrashed("Blender exited before finishing its work", tail)
    return None


def _describe(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"status {returncode}"


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    """Decode a byte stream into lines, cutting overlong ones."""
    buffer = b""
    while chunk := await stream.receive_some():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        while len(buffer) > MAX_LINE_BYTES:
            lines.append(buffer[:MAX_LINE_BYTES])
            buffer = buffer[MAX_LINE_BYTES:]
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


async def _stop(process: trio.Process, grace_seconds: float) -> None:
    """End the process group: SIGTERM, then SIGKILL after the grace period."""
    if process.returncode is None:
        _signal_group(process, signal.SIGTERM)
        with trio.move_on_after(grace_seconds):
            await process.wait()
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
            await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()


def _signal_group(process: trio.Process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
