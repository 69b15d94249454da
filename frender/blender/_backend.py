"""Backends: the Blender builds (and the model of one) that fRender renders with.

Every backend offers the same operations, reached through the module
functions `probe`, `inspect`, `render` and `open_session` so the apps never care
which one runs:

- a `CliBackend` runs a `blender` executable, a `BpyBackend` runs the `bpy`
  module in a fresh Python (`_runner`); a probe or an inspection is one
  process, a render session is one process that loads and guards the file
  once, then renders batch after batch of frames fed to it (starting Blender
  and loading a file costs more than a small task's frames); a one-shot
  `render` is a session of one batch;
- a `ModelledBackend` (in `_modelled`) sleeps and writes synthetic frames.

Each real request first reads the file's header here, so "not a blend file" and
"saved by a newer Blender" are answered without starting Blender.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from attrs import frozen

from ..core.profile import RenderProfile
from ._errors import BlenderCrashed, BlenderError, BlenderNotFound, NewerBlendFile
from ._agreement import calibrate
from ._header import read_blend_header
from ._output import BatchDone, FrameSaved, OutputEvent, Ready, Reported
from ._runner import Limits, Sandbox, ScriptProcess, run_inblender
from ._sandbox import sandbox_available
from ._window import MIN_RENDER_FRACTION, BadWindow, Window

log = logging.getLogger(__name__)

__all__ = [
    "check_device",
    "Backend",
    "BlendInfo",
    "BlenderBackend",
    "BpyBackend",
    "CliBackend",
    "RenderedFrame",
    "Session",
    "cpu_class",
    "find_backend",
    "frame_name",
    "inspect",
    "open_session",
    "probe",
    "render",
    "start_session",
    "window_name",
]

OnFrame = Callable[["RenderedFrame"], Awaitable[None]]
# SIMD levels, best first; the first one /proc/cpuinfo lists names the CPU class.
SIMD_FLAGS = ("avx512f", "avx2", "avx", "sse4_2", "sve2", "sve", "asimd", "neon")


@frozen(kw_only=True)
class RenderedFrame:
    """A frame (or the window of one that was asked for) saved as PNG, and the seconds Blender spent rendering it."""

    frame: int
    path: Path
    seconds: float
    window: Window | None = None  # the part of the frame `path` holds; None: all of it


@frozen(kw_only=True)
class BlendInfo:
    """What a requester needs to know about a .blend before accepting the job."""

    saved_with: str  # version of the Blender that saved the file, "5.0.119"
    scene: str
    frame_start: int
    frame_end: int
    frame_step: int
    fps: float
    resolution: tuple[int, int]
    engine: str
    samples: int | None  # Cycles only
    denoiser: str | None  # None: denoising off
    external_files: tuple[str, ...]
    packed_files: tuple[str, ...]
    refusals: tuple[str, ...]  # what the guard would refuse; empty means renderable
    output: dict[str, Any] = attrs.field(factory=dict)  # the file's output settings (see _inblender.output_settings)
    missing: tuple[tuple[str, str], ...] = ()  # (path as written, what uses it) for each file not on disk
    # Why a crop render of this file may differ from the whole frame (compositor filters, sequencer strips):
    # such a job is checked on whole frames. Empty: crop checks are sound.
    crop_unsafe: tuple[str, ...] = ()
    # Why no frame can ever render (no camera, no scene): such a file is refused at submit.
    unrenderable: tuple[str, ...] = ()
    # The compositor nodes that change a render (a denoised file's tiles are denoised after the stitch, uncomposited).
    composited: tuple[str, ...] = ()


class Backend(abc.ABC):
    """Something that renders .blend files: a Blender build, or a model of one."""

    # A model cuts its windows out of its frames: whether they equal is known, not measured (blender.measure_crops).
    windows_are_frames: bool = False

    @abc.abstractmethod
    async def probe(self) -> RenderProfile:
        """The render profile of this backend's renders."""

    async def version(self) -> str:
        """The Blender version it renders with ("5.0.1"); a real Blender says it without calibrating (``probe``)."""
        return (await self.probe()).blender_version

    @abc.abstractmethod
    async def inspect(self, blend: Path, *, limits: Limits, job_dir: Path | None = None) -> BlendInfo:
        """Describe a .blend file, sandboxed like a render; paths must lie in job_dir (default: its folder)."""

    @abc.abstractmethod
    async def render(
        self,
        blend: Path,
        job_dir: Path,
        frames: Sequence[int],
        *,
        threads: int | None,
        limits: Limits,
        on_frame: OnFrame | None,
        window: Window | None = None,
    ) -> list[RenderedFrame]:
        """Render frames to job_dir/out/frame_####.png (a window of each to window_####.png), handing each over as saved."""

    async def start_session(
        self, blend: Path, job_dir: Path, *, threads: int | None = None, limits: Limits = Limits(), noisy: bool = False
    ) -> Session:
        """A session rendering `blend` batch after batch; by default each batch is a one-shot render.

        `noisy`: render as a denoised file's tile is rendered (`_inblender.render_noisy`): a real Blender's alone."""
        if noisy:
            raise BlenderError(f"{type(self).__name__} renders no noisy tiles with denoising passes")
        return _RenderEachTime(self, blend, job_dir, threads=threads, limits=limits)

    async def denoise(self, blend: Path, job_dir: Path, noisy: Path, out: Path, *, limits: Limits) -> Path:
        """Denoise the stitched one-part EXR `noisy` once with `blend`'s denoiser settings and write it to `out` in the
        file's own format (`_denoise.denoise_frame`); `noisy` and `out` lie in `job_dir`. A real Blender's alone."""
        raise BlenderError(f"{type(self).__name__} does not denoise")


class Session(abc.ABC):
    """A .blend opened for rendering, kept open between batches of frames.

    `render` may be called any number of times, one call at a time; each call
    writes its frames to job_dir/out/frame_####.png afresh (a frame rendered
    before is deleted first) and hands each over as it is saved. A call that
    fails (any BlenderError, its wall-clock limit, cancellation) ends the
    session: `alive` turns false and the caller opens another. The session's
    `limits.wall_seconds` bounds all its calls together; `aclose` ends it.

    A call with a `window` renders only that part of each frame (Blender's
    render border, cropped to it) into job_dir/out/window_####.png. A window
    outside the frame or below `MIN_RENDER_FRACTION` of it raises BadWindow
    before anything renders, and the session lives on.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = trio.current_time() + limits.wall_seconds
        self.closed = False
        self._busy = False

    @property
    def alive(self) -> bool:
        """Whether another batch may be rendered."""
        return not self.closed

    @property
    def remaining(self) -> float:
        """Seconds left of the session's wall-clock limit."""
        return self.deadline - trio.current_time()

    @property
    def resolution(self) -> tuple[int, int] | None:
        """The rendered frame's width and height, where the session knows it."""
        return None

    async def render(
        self,
        frames: Sequence[int],
        *,
        on_frame: OnFrame | None = None,
        wall_seconds: float | None = None,
        window: Window | None = None,
    ) -> list[RenderedFrame]:
        """Render a batch; past `wall_seconds` (or the session's limit) raise RenderTimeout and end the session."""
        if not self.alive:
            raise BlenderCrashed("this render session has ended; open another")
        if self._busy:
            raise RuntimeError("a render session renders one batch at a time")
        if window is not None:
            if self.resolution is None:
                raise BadWindow("this session cannot render windows: it does not know its frame size")
            window.check(*self.resolution, min_fraction=MIN_RENDER_FRACTION)
        self._busy = True
        deadline, limit = self.deadline, self.limits.wall_seconds
        if wall_seconds is not None and trio.current_time() + wall_seconds < deadline:
            deadline, limit = trio.current_time() + wall_seconds, wall_seconds
        ok = False
        try:
            rendered = await self._render(list(frames), on_frame, deadline, limit, window)
            ok = True
            return rendered
        finally:
            self._busy = False
            if not ok:
                await self.aclose()

    async def aclose(self) -> None:
        """End the session (and its process); closing twice is fine."""
        self.closed = True

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def _render(
        self, frames: list[int], on_frame: OnFrame | None, deadline: float, limit: float, window: Window | None
    ) -> list[RenderedFrame]:
        """Render one batch (of `window` only, if given) by the trio clock's `deadline`, set by a limit of `limit` s."""


class _RenderEachTime(Session):
    """A session of a backend with nothing to keep open: every batch is a one-shot render."""

    def __init__(self, backend: Backend, blend: Path, job_dir: Path, *, threads: int | None, limits: Limits) -> None:
        super().__init__(limits)
        self.backend = backend
        self.blend = blend
        self.job_dir = job_dir
        self.threads = threads

    @property
    def resolution(self) -> tuple[int, int] | None:
        return getattr(self.backend, "resolution", None)

    async def _render(
        self, frames: list[int], on_frame: OnFrame | None, deadline: float, limit: float, window: Window | None
    ) -> list[RenderedFrame]:
        limits = attrs.evolve(self.limits, wall_seconds=max(deadline - trio.current_time(), 0.0))
        # A window is passed only when asked for, so backends written before windows keep working.
        extra = {} if window is None else {"window": window}
        return await self.backend.render(
            self.blend, self.job_dir, frames, threads=self.threads, limits=limits, on_frame=on_frame, **extra
        )


class _HandOver:
    """Hands over each requested frame Blender reports saved, checking its file is really there."""

    def __init__(self, out_dir: Path, frames: Sequence[int], on_frame: OnFrame | None, window: Window | None, extension: str = ".png") -> None:
        self.out_dir = out_dir
        self.extension = extension
        self.wanted = set(frames)
        self.on_frame = on_frame
        self.window = window
        self.name = frame_name if window is None else window_name
        self.rendered: list[RenderedFrame] = []

    async def __call__(self, event: OutputEvent) -> None:
        if not isinstance(event, FrameSaved) or event.frame not in self.wanted:
            return
        # The path is ours, not the one printed: only a requested frame's
        # own file in out/ is ever handed over.
        path = self.out_dir / self.name(event.frame, self.extension)
        if path.is_symlink() or not path.is_file():
            raise BlenderCrashed(f"Blender reported frame {event.frame} but {path} is not a file")
        self.wanted.discard(event.frame)
        frame = RenderedFrame(frame=event.frame, path=path, seconds=event.seconds, window=self.window)
        self.rendered.append(frame)
        if self.on_frame is not None:
            await self.on_frame(frame)


class _BlenderSession(Session):
    """One Blender process that loaded and guarded the file, rendering the batches it is fed."""

    def __init__(self, process: ScriptProcess, out_dir: Path, limits: Limits, resolution: tuple[int, int] | None, extension: str = ".png") -> None:
        super().__init__(limits)
        self.process = process
        self.out_dir = out_dir
        self.extension = extension  # the file's own format, as Blender said when it was ready
        self.deadline = process.deadline
        self.batches = 0  # as counted by the process itself
        self._resolution = resolution

    @property
    def resolution(self) -> tuple[int, int] | None:
        """The frame size Blender reported once it had loaded the file."""
        return self._resolution

    @property
    def pid(self) -> int:
        """The process (bubblewrap's, when sandboxed) that renders every batch."""
        return self.process.process.pid

    @property
    def alive(self) -> bool:
        return not self.closed and not self.process.dead

    async def _render(
        self, frames: list[int], on_frame: OnFrame | None, deadline: float, limit: float, window: Window | None
    ) -> list[RenderedFrame]:
        extension = ".png" if window is not None and window.lossless else self.extension
        hand_over = _HandOver(self.out_dir, frames, on_frame, window, extension)
        for frame in set(frames):
            # A frame rendered before in this job must not pass for this batch's.
            with contextlib.suppress(OSError):
                (self.out_dir / hand_over.name(frame, extension)).unlink(missing_ok=True)
        batch: dict[str, Any] = {"frames": frames}
        if window is not None:
            batch["window"] = [window.left, window.top, window.width, window.height]
            if window.in_place:
                batch["in_place"] = True
            if window.lossless:
                batch["lossless"] = True
        await self.process.send(batch)
        done = await self.process.wait_for(BatchDone, deadline=deadline, limit_seconds=limit, on_event=hand_over)
        assert isinstance(done, BatchDone)
        self.batches = done.count
        if hand_over.wanted:
            raise BlenderCrashed(f"Blender finished without frames {sorted(hand_over.wanted)}", list(self.process.tail))
        return hand_over.rendered

    async def aclose(self) -> None:
        self.closed = True
        await self.process.aclose()


@frozen(kw_only=True)
class _Facts:
    """What one probe learnt about a Blender build."""

    profile: RenderProfile
    version: tuple[int, int]
    install_dirs: tuple[str, ...]


class BlenderBackend(Backend):
    """A real Blender; subclasses say how to start it with a script."""

    def __init__(self, device: str = "CPU") -> None:
        self.device = device  # the Cycles device it renders on: "CPU", "CUDA", "OPTIX", "HIP", "METAL", "ONEAPI"
        self._facts: _Facts | None = None
        self._base: dict[str, Any] | None = None  # the probe's payload, before the GL probe
        self._probing = trio.Lock()
        self._profile: RenderProfile | None = None
        self._calibrating = trio.Lock()

    @abc.abstractmethod
    def command(self, script: str, request: str) -> list[str]:
        """The command line that runs `script` with `request` after a `--`."""

    async def probe(self) -> RenderProfile:
        """The render profile, probed once per backend, with this machine's agreement class (see _agreement.py)."""
        async with self._calibrating:  # the calibration renders probe the facts first: outside their lock
            if self._profile is None:
                profile = (await self._probe_facts()).profile
                agreement = await calibrate(self, profile.blender_version, profile.build_hash)
                self._profile = attrs.evolve(profile, agreement=agreement)
            return self._profile

    async def _in_job(self, blend: Path, job_dir: Path, *others: Path) -> tuple[Path, Path]:
        """``blend`` and ``job_dir`` resolved, once ``blend`` (and ``others``) are found inside the job directory and
        ``blend``'s header is a .blend's: the sandbox mounts that directory alone."""
        job_dir, blend = job_dir.resolve(), blend.resolve()
        for path in (blend, *(other.resolve() for other in others)):
            if not path.is_relative_to(job_dir):
                raise ValueError(f"{path} is not inside the job directory {job_dir}")
        await self._check_header(blend)
        return blend, job_dir

    async def inspect(self, blend: Path, *, limits: Limits, job_dir: Path | None = None) -> BlendInfo:
        """Describe a .blend; job_dir (by default its folder) is the job directory, mounted read-only."""
        blend, job_dir = await self._in_job(blend, blend.resolve().parent if job_dir is None else job_dir)
        request = {"mode": "inspect", "blend": str(blend), "job_dir": str(job_dir)}
        events = await self._run(request, job_dir, job_writable=False, limits=limits)
        (info,) = [event.payload for event in events if isinstance(event, Reported) and event.kind == "INFO"]
        return BlendInfo(
            **{key: info[key] for key in ("saved_with", "scene", "fps", "engine", "samples", "denoiser")},
            frame_start=int(info["frame_start"]),
            frame_end=int(info["frame_end"]),
            frame_step=int(info["frame_step"]),
            resolution=tuple(info["resolution"]),
            external_files=tuple(info["external_files"]),
            packed_files=tuple(info["packed_files"]),
            refusals=tuple(info["refusals"]),
            output=dict(info["output"]),
            missing=tuple((m["path"], m["used_by"]) for m in info["missing"]),
            crop_unsafe=tuple(info.get("crop_unsafe", ())),
            unrenderable=tuple(info.get("unrenderable", ())),
            composited=tuple(info.get("composited", ())),
        )

    async def render(
        self,
        blend: Path,
        job_dir: Path,
        frames: Sequence[int],
        *,
        threads: int | None = None,
        limits: Limits = Limits(),
        on_frame: OnFrame | None = None,
        window: Window | None = None,
    ) -> list[RenderedFrame]:
        """Render in one Blender process (a session of one batch); each frame is handed over when saved."""
        async with await self.start_session(blend, job_dir, threads=threads, limits=limits) as session:
            return await session.render(frames, on_frame=on_frame, window=window)

    async def start_session(
        self, blend: Path, job_dir: Path, *, threads: int | None = None, limits: Limits = Limits(), noisy: bool = False
    ) -> Session:
        """Start Blender on `blend`, sandboxed, and return once it has loaded and guarded the file (`noisy`: its
        frames rendered as a denoised file's tiles, `_inblender.render_noisy`).

        Raises the BlenderError of a file that cannot render here (GuardRefused,
        NotABlendFile, MissingDenoiser...) or of a Blender that failed to start.
        """
        blend, job_dir = await self._in_job(blend, job_dir)
        out_dir = job_dir / "out"
        out_dir.mkdir(exist_ok=True)
        request = {
            "mode": "session",
            "blend": str(blend),
            "job_dir": str(job_dir),
            "out_dir": str(out_dir),
            "threads": threads,
            "device": self.device,
            **({"noisy": True} if noisy else {}),
        }
        facts = await self._probe_facts(gl=False)
        sandbox = None
        if sandbox_available():
            sandbox = Sandbox(job_dir=job_dir, job_writable=True, install_dirs=facts.install_dirs)
        process = await ScriptProcess.start(self.command, request, cwd=job_dir, limits=limits, sandbox=sandbox)
        try:
            ready = await process.wait_for(Ready, deadline=process.deadline)
        except BaseException:
            await process.aclose()
            raise
        assert isinstance(ready, Ready)
        return _BlenderSession(process, out_dir, limits, ready.resolution, ready.extension)

    async def encode_jpeg(self, source: Path, out: Path, *, quality: int, limits: Limits = Limits()) -> Path:
        """Encode the 8-bit PNG ``source`` as the JPEG ``out`` (in the same folder) with Blender's own writer."""
        folder = source.parent.resolve()
        if out.resolve().parent != folder:
            raise ValueError(f"{out} is not beside {source}")
        request = {"mode": "encode", "source": str(source.resolve()), "out": str(out.resolve()), "quality": int(quality)}
        await self._run(request, folder, job_writable=True, limits=limits)
        if out.is_symlink() or not out.is_file():
            raise BlenderCrashed(f"Blender did not write {out}")
        return out

    async def denoise(self, blend: Path, job_dir: Path, noisy: Path, out: Path, *, limits: Limits) -> Path:
        """One Blender process, sandboxed (`job_dir` writable), runs `_inblender.denoise`."""
        blend, job_dir = await self._in_job(blend, job_dir, noisy, out)
        out_dir = job_dir / "out"
        out_dir.mkdir(exist_ok=True)
        request = {
            "mode": "denoise", "blend": str(blend), "job_dir": str(job_dir), "out_dir": str(out_dir), "device": self.device,
            "input": str(noisy.resolve()), "denoised": str(out_dir / "denoised.exr"), "output": str(out.resolve()),
        }
        await self._run(request, job_dir, job_writable=True, limits=limits)
        if out.is_symlink() or not out.is_file():
            raise BlenderCrashed(f"Blender denoised the frame but wrote no {out.name}")
        return out

    async def version(self) -> str:
        """The version alone: one start of Blender, no GL probe and no calibration renders."""
        return (await self._probe_facts(gl=False)).profile.blender_version

    async def _probe_facts(self, *, gl: bool = True) -> _Facts:
        """The build's facts, probed once; ``gl=False`` spares the GL probe (a render) where only the version
        and the install's folders are needed: inspecting and guarding a file (an artist's submit does)."""
        async with self._probing:
            if self._base is None:
                # The probe opens no file, so it runs unsandboxed: it is what
                # tells the sandbox where Blender's install lies.
                events = await run_inblender(
                    self.command, {"mode": "probe"}, cwd=Path.cwd(), limits=Limits(wall_seconds=60), sandbox=None
                )
                (self._base,) = [event.payload for event in events if isinstance(event, Reported)]
                check_device(self.device, self._base.get("devices", ["CPU"]), self._base["version"])
            if not gl:
                return _facts_from(self._base, self.device)
            if self._facts is None:
                self._facts = _facts_from({**self._base, **await self._probe_gl(tuple(self._base["install_dirs"]))}, self.device)
            return self._facts

    async def _probe_gl(self, install_dirs: tuple[str, ...]) -> dict[str, Any]:
        """The GL renderer EEVEE and Workbench would draw with, asked in the sandbox renders run in; {} where there is none.

        A Blender without a GPU backend still renders Cycles: the failure is
        logged and the profile's GL fields stay empty, so it takes no job of a
        GPU engine (``RenderProfile.renders``).
        """
        with tempfile.TemporaryDirectory(prefix="frender-gl-") as empty:
            sandbox = Sandbox(job_dir=Path(empty), job_writable=False, install_dirs=install_dirs) if sandbox_available() else None
            try:
                events = await run_inblender(
                    self.command, {"mode": "gl"}, cwd=Path(empty), limits=Limits(wall_seconds=120), sandbox=sandbox
                )
            except BlenderError as exc:
                log.warning("no GL renderer for EEVEE jobs: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return {}
        return next((event.payload for event in events if isinstance(event, Reported)), {})

    async def _check_header(self, blend: Path) -> None:
        header = read_blend_header(blend)
        facts = await self._probe_facts(gl=False)
        if header.version > facts.version:
            raise NewerBlendFile(
                f"{blend.name} was saved by Blender {header.version_string},"
                f" newer than this Blender {facts.profile.blender_version}"
            )

    async def _run(
        self,
        request: dict[str, Any],
        job_dir: Path,
        *,
        job_writable: bool,
        limits: Limits,
        on_event: Callable[[OutputEvent], Awaitable[None]] | None = None,
    ) -> list[OutputEvent]:
        facts = await self._probe_facts(gl=False)
        sandbox = None
        if sandbox_available():
            sandbox = Sandbox(job_dir=job_dir, job_writable=job_writable, install_dirs=facts.install_dirs)
        return await run_inblender(
            self.command, request, cwd=job_dir, limits=limits, sandbox=sandbox, on_event=on_event
        )


def check_device(device: str, found: Sequence[str], version: str) -> None:
    """Refuse a device this Blender cannot render on here, naming those it can."""
    if device not in found:
        raise BlenderNotFound(f"Blender {version} finds no {device} device here; it can render on: {', '.join(found)}")


def _facts_from(payload: dict[str, Any], device: str = "CPU") -> _Facts:
    profile = RenderProfile(
        blender_version=payload["version"],
        build_hash=payload["build_hash"],
        device=device,
        cpu_class=cpu_class(),
        **{key: str(payload.get(key, "")) for key in ("gl_backend", "gl_renderer", "gl_version")},
    )
    major, minor = payload["version_tuple"][:2]
    return _Facts(profile=profile, version=(major, minor), install_dirs=tuple(payload["install_dirs"]))


class CliBackend(BlenderBackend):
    """A `blender` executable, run as `blender -b --factory-startup -Y ...`."""

    def __init__(self, path: str | Path, device: str = "CPU") -> None:
        super().__init__(device)
        self.path = Path(path)

    def command(self, script: str, request: str) -> list[str]:
        """Blender in background, factory settings, auto-run scripts off, then the script."""
        return [str(self.path), "-b", "--factory-startup", "-Y", "-noaudio",
                "--python-exit-code", "1", "-P", script, "--", request]  # fmt: skip

    def __repr__(self) -> str:
        return f"CliBackend({str(self.path)!r})"


class BpyBackend(BlenderBackend):
    """The `bpy` module, imported by a fresh Python interpreter."""

    def __init__(self, python: str | Path = sys.executable, device: str = "CPU") -> None:
        super().__init__(device)
        self.python = Path(python)

    def command(self, script: str, request: str) -> list[str]:
        """Python ignoring PYTHON* variables (-E) and not importing from the job dir (-P)."""
        return [str(self.python), "-E", "-P", script, "--", request]

    def __repr__(self) -> str:
        return f"BpyBackend({str(self.python)!r})"


def find_backend(blender: str | None = None, *, device: str = "CPU") -> BlenderBackend:
    """The named blender executable; else bpy if it imports; else `blender` on PATH; rendering on ``device``."""
    if blender is not None:
        path = shutil.which(blender)
        if path is None:
            raise BlenderNotFound(f"no Blender executable at {blender!r}")
        return CliBackend(path, device)
    check = [sys.executable, "-E", "-P", "-c", "import importlib.util, sys; sys.exit(not importlib.util.find_spec('bpy'))"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return BpyBackend(sys.executable, device)
    if path := shutil.which("blender"):
        return CliBackend(path, device)
    raise BlenderNotFound("no Blender found: install the bpy extra (pip install 'frender[bpy]') or put blender on PATH")


def cpu_class() -> str:
    """The machine and its best SIMD level, e.g. "x86_64-avx2"; Cycles' kernels differ across these."""
    machine = platform.machine() or "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return machine
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    best = next((flag for flag in SIMD_FLAGS if flag in flags), None)
    return machine if best is None else f"{machine}-{best}"


def frame_name(frame: int, extension: str = ".png") -> str:
    """The file Blender's "frame_####" pattern gives a frame: frame_0012.png, frame_-0003.exr."""
    return f"frame_{'-' if frame < 0 else ''}{abs(frame):04d}{extension}"


def window_name(frame: int, extension: str = ".png") -> str:
    """The file a window of a frame is rendered to: window_0012.png."""
    return "window_" + frame_name(frame, extension).removeprefix("frame_")


async def probe(backend: Backend) -> RenderProfile:
    """The render profile of a backend (probed once, then cached)."""
    return await backend.probe()


async def inspect(backend: Backend, blend: Path, *, limits: Limits = Limits(), job_dir: Path | None = None) -> BlendInfo:
    """Describe a .blend file before accepting a job, sandboxed like a render (job_dir: its tree's root)."""
    return await backend.inspect(blend, limits=limits, job_dir=job_dir)


async def start_session(
    backend: Backend, blend: Path, job_dir: Path, *, threads: int | None = None, limits: Limits = Limits(), noisy: bool = False
) -> Session:
    """Open `blend` for rendering batch after batch (see `Session`); the caller must `aclose` it. `noisy`: its frames
    rendered as a denoised file's tiles (asked for only then, so backends written before keep working)."""
    extra = {"noisy": True} if noisy else {}
    return await backend.start_session(blend, job_dir, threads=threads, limits=limits, **extra)


@contextlib.asynccontextmanager
async def open_session(
    backend: Backend, blend: Path, job_dir: Path, *, threads: int | None = None, limits: Limits = Limits()
) -> AsyncIterator[Session]:
    """`async with open_session(...) as session: await session.render(frames)`, as often as needed.

    One Blender process, started and guarded like a one-shot render, renders
    every batch; leaving the block ends it. A guard refusal raises here.
    """
    session = await backend.start_session(blend, job_dir, threads=threads, limits=limits)
    try:
        yield session
    finally:
        await session.aclose()


async def render(
    backend: Backend,
    blend: Path,
    job_dir: Path,
    frames: Sequence[int],
    *,
    threads: int | None = None,
    limits: Limits = Limits(),
    on_frame: OnFrame | None = None,
    window: Window | None = None,
) -> list[RenderedFrame]:
    """Render frames of `blend` into job_dir/out/frame_####.png, awaiting on_frame as each is saved.

    With a `window`, only that part of each frame is rendered, into job_dir/out/window_####.png.
    """
    return await backend.render(
        blend, job_dir, frames, threads=threads, limits=limits, on_frame=on_frame, window=window
    )
