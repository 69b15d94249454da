"""Running `_inblender.py` in one Blender process: limits, streaming, outcome.

Rules:

1. One process per request (`run_inblender`) or per render session
   (`ScriptProcess`, fed batches on stdin), in its own process group, so
   cancelling (the caller's or the wall-clock limit's) stops the whole group:
   SIGTERM, a grace period, then SIGKILL, shielded so it completes even while
   being cancelled. A session interrupted mid-batch is killed the same way:
   what it was doing is unknown, so it is never fed again.
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

import attrs
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
from ._sandbox import bwrap_prefix, clean_environment, limited

__all__ = ["Limits"]

TAIL_LINES = 20
MAX_LINE_BYTES = 16 * 1024  # a longer line is cut into pieces rather than buffered whole
GiB = 2**30


@frozen(kw_only=True)
class Limits:
    """Bounds on one Blender process: wall-clock seconds, address space and CPU priority."""

    wall_seconds: float = 3600.0
    memory_bytes: int | None = 8 * GiB
    nice: int = 0  # added to the process's niceness (a friend's renders: 10, below the owner's programs)
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


async def _spawn(
    command: Callable[[str, str], list[str]],
    request: dict[str, Any],
    staged: tuple[Path, Path, dict[str, str]],
    *,
    nonce: str,
    cwd: Path,
    limits: Limits,
    sandbox: Sandbox | None,
    stdin: int,
) -> trio.Process:
    run_dir, script, env = staged
    argv = command(str(script), json.dumps({**request, "nonce": nonce}))
    if sandbox is not None:
        argv = bwrap_prefix(
            run_dir=run_dir,
            job_dir=sandbox.job_dir,
            job_writable=sandbox.job_writable,
            install_dirs=sandbox.install_dirs,
        ) + argv
    return await trio.lowlevel.open_process(
        limited(argv, limits.memory_bytes, nice=limits.nice),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


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
    with staged_script() as staged:
        process = await _spawn(
            command, request, staged, nonce=nonce, cwd=cwd, limits=limits, sandbox=sandbox, stdin=subprocess.DEVNULL
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


class ScriptProcess:
    """`_inblender.py` running in session mode: fed one JSON line per batch, read event by event.

    Start it with `start`; `wait_for` reads events until one of a kind comes.
    Whatever stops a `wait_for` short (EOF, its deadline, an error raised by
    `on_event`, cancellation) ends the process, and the process is dead from
    then on. `limits.wall_seconds` bounds the whole life of the process.
    """

    def __init__(self, process: trio.Process, nonce: str, limits: Limits, stack: contextlib.ExitStack) -> None:
        self.process = process
        self.nonce = nonce
        self.limits = limits
        self.deadline = trio.current_time() + limits.wall_seconds
        self.dead = False
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.events: list[OutputEvent] = []  # since the last `send`: what decides a failure
        self._stack = stack
        assert process.stdout is not None
        self._reader = _LineReader(process.stdout)

    @classmethod
    async def start(
        cls,
        command: Callable[[str, str], list[str]],
        request: dict[str, Any],
        *,
        cwd: Path,
        limits: Limits,
        sandbox: Sandbox | None,
    ) -> ScriptProcess:
        nonce = secrets.token_hex(8)
        with contextlib.ExitStack() as stack:
            staged = stack.enter_context(staged_script())
            process = await _spawn(
                command, request, staged, nonce=nonce, cwd=cwd, limits=limits, sandbox=sandbox, stdin=subprocess.PIPE
            )
            return cls(process, nonce, limits, stack.pop_all())
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(self, message: dict[str, Any]) -> None:
        """Write one JSON line to the script's stdin; a dead pipe is left for `wait_for` to explain."""
        self.events = []
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all((json.dumps(message) + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the process ended: reading its output to EOF says why

    async def wait_for(
        self,
        kind: type,
        *,
        deadline: float,
        limit_seconds: float | None = None,
        on_event: Callable[[OutputEvent], Awaitable[None]] | None = None,
    ) -> OutputEvent:
        """Read events until one of `kind`; raise the run's BlenderError if the process ends or runs late.

        `limit_seconds` is the wall-clock limit that set the deadline, for the message of a timeout.
        """
        if self.dead:
            raise BlenderCrashed("this Blender session has ended", list(self.tail))
        arrived = False
        try:
            with trio.move_on_at(deadline) as scope:
                while (line := await self._reader.readline()) is not None:
                    self.tail.append(line)
                    if (event := parse_line(line, self.nonce)) is None:
                        continue
                    self.events.append(event)
                    if on_event is not None:
                        await on_event(event)
                    if isinstance(event, kind):
                        arrived = True
                        return event
                await self.process.wait()
        finally:
            if not arrived:
                await self._kill()
        limits = self.limits
        if scope.cancelled_caught and limit_seconds is not None:
            limits = attrs.evolve(limits, wall_seconds=limit_seconds)
        error = failure(
            self.events, self.process.returncode, list(self.tail), timed_out=scope.cancelled_caught, limits=limits
        )
        raise error or BlenderCrashed("Blender exited before finishing its work", list(self.tail))

    async def aclose(self) -> None:
        """End the process: EOF on its stdin ends its loop; past a short wait, the signals."""
        with trio.CancelScope(shield=True):
            if not self.dead and self.process.stdin is not None:
                await self.process.stdin.aclose()
                with trio.move_on_after(min(self.limits.grace_seconds, 0.5)):
                    await self.process.wait()
            await self._kill()

    async def _kill(self) -> None:
        self.dead = True
        with trio.CancelScope(shield=True):
            await _stop(self.process, self.limits.grace_seconds)
            self._stack.close()


def failure(
    events: Sequence[OutputEvent], returncode: int | None, tail: list[str], *, timed_out: bool, limits: Limits
) -> BlenderError | None:
    """The error a run that printed `events` and ended with `returncode` stands for, if any (None: no exit status was
    seen, which only a run stopped at its deadline leaves)."""
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


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "no exit status"
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


class _LineReader:
    """Lines from a byte stream, one call at a time (so several callers can take turns)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: deque[str] = deque()
        self.buffer = b""
        self.eof = False

    async def readline(self) -> str | None:
        """The next line (cut if overlong), or None at EOF."""
        while not self.lines:
            if self.eof:
                return None
            chunk = await self.stream.receive_some()
            if not chunk:
                self.eof = True
                if self.buffer:
                    self.lines.append(self.buffer.decode("utf-8", "replace"))
                    self.buffer = b""
                continue
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            while len(self.buffer) > MAX_LINE_BYTES:
                lines.append(self.buffer[:MAX_LINE_BYTES])
                self.buffer = self.buffer[MAX_LINE_BYTES:]
            self.lines.extend(line.decode("utf-8", "replace") for line in lines)
        return self.lines.popleft()


async def _stop(process: trio.Process, grace_seconds: float) -> None:
    """End the process group: SIGTERM, then SIGKILL after the grace period."""
    if process.returncode is None:
        _signal_group(process, signal.SIGTERM)
        with trio.move_on_after(grace_seconds):
            await process.wait()
        if process.returncode is None:
            _signal_group(process, signal.SIGKILL)
            await process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            await stream.aclose()


def _signal_group(process: trio.Process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
