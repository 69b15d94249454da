"""Blender runtimes: the Blenders a friend or a requester holds, and which one renders a file.

A runtime is a backend of a known version: the `bpy` module in an environment
of its own (``frender blender add 4.2`` installs one, with the Python that
version needs), the `bpy` this Python imports, or a Blender executable given by
path. Versions sample differently (a 4.2 file rendered by 5.0 differs from
4.2's own render in 95% of pixels), so:

Rule 1: a job renders with the Blender series that saved its file (major.minor,
        read from the .blend's header whatever its compression), at the newest
        patch held; the artist may name another (``--blender 5.0``).
Rule 2: a file is never rendered by a Blender older than the one that saved it.
Rule 3: a series nobody holds, or a file newer than every runtime, is refused
        before any work, naming the versions held.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ._backend import Backend, BlenderBackend, BpyBackend, find_backend
from ._errors import BlenderNotFound, NewerBlendFile, NotABlendFile
from ._header import read_blend_header

__all__ = ["NoRuntime", "Runtimes", "add_runtime", "bpy_python", "choose_version", "held_runtimes", "runtimes_dir"]

VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class NoRuntime(BlenderNotFound):
    """No Blender held renders this file as its rules say (Rule 3)."""


def _parse(version: str) -> tuple[int, ...] | None:
    """(4, 2, 23) from "4.2.23", (4, 2) from "4.2"; None for what names no version ("modelled")."""
    match = VERSION.fullmatch(version.strip())
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def choose_version(held: Sequence[str], saved_with: tuple[int, int] | None, requested: str = "") -> str:
    """The held version that renders a file saved by ``saved_with`` (Rules 1-3); ``requested``: "4.2" or "4.2.23".

    ``saved_with`` None (no readable header: a modelled scene) leaves the choice to ``requested`` or to a lone runtime.
    """
    if not held:
        raise NoRuntime("no Blender is held here")
    listing = ", ".join(sorted(held, key=lambda v: _parse(v) or (), reverse=True))
    if len(held) == 1 and _parse(held[0]) is None and requested in ("", held[0]):
        return held[0]  # a lone stand-in (a modelled Blender) renders whatever it is given
    if requested:
        wanted = _parse(requested)
        if wanted is None:
            raise NoRuntime(f"--blender {requested!r} is not a version like 4.2 or 4.2.23 (held: {listing})")
        matching = [v for v in held if (_parse(v) or ())[: len(wanted)] == wanted]
        if not matching:
            raise NoRuntime(f"Blender {requested} is not held here (held: {listing})")
    elif saved_with is None:
        if len(held) > 1:
            raise NoRuntime(f"which Blender renders this file cannot be read from it: name one with --blender (held: {listing})")
        matching = list(held)
    else:
        matching = [v for v in held if (_parse(v) or ())[:2] == saved_with]
        if not matching:
            series = ".".join(map(str, saved_with))
            versioned = [p for v in held if (p := _parse(v)) is not None]
            if versioned and all(saved_with > p[:2] for p in versioned):
                raise NoRuntime(f"the file was saved by Blender {series}, newer than every Blender held here ({listing})")
            raise NoRuntime(
                f"the file was saved by Blender {series}, and no Blender {series} is held here ({listing}):"
                f" name one with --blender (its pixels may differ from {series}'s own), or ask for {series} to be added"
            )
    chosen = max(matching, key=lambda v: _parse(v) or ())
    version = _parse(chosen)
    if saved_with is not None and version is not None and saved_with > version[:2]:
        raise NewerBlendFile(f"the file was saved by Blender {'.'.join(map(str, saved_with))}, newer than Blender {chosen}")
    return chosen


class Runtimes:
    """The Blenders one node holds, each probed once for its version."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise NoRuntime("no Blender is held here")
        self.backends = tuple(backends)
        self._versions: dict[str, Backend] | None = None

    @classmethod
    def of(cls, backend: Backend | Runtimes) -> Runtimes:
        return backend if isinstance(backend, Runtimes) else cls([backend])

    async def versions(self) -> dict[str, Backend]:
        """Each held version ("5.0.1") and its backend; of two backends of one version, the first given."""
        if self._versions is None:
            versions: dict[str, Backend] = {}
            for backend in self.backends:
                versions.setdefault(await backend.version(), backend)  # the chosen one alone is calibrated, when probed
            self._versions = versions
        return self._versions

    async def for_file(self, blend: Path, requested: str = "") -> Backend:
        """The backend that renders ``blend`` (Rules 1-3); raise NoRuntime or NewerBlendFile naming what is held."""
        try:
            saved_with: tuple[int, int] | None = read_blend_header(blend).version
        except NotABlendFile:
            saved_with = None  # a modelled scene; a real Blender says what the file is when it opens it
        versions = await self.versions()
        return versions[choose_version(tuple(versions), saved_with, requested)]

    async def for_version(self, version: str) -> Backend:
        """The backend of exactly ``version`` (a job's logged profile); NoRuntime once it is no longer held."""
        versions = await self.versions()
        if version not in versions:
            raise NoRuntime(f"Blender {version} is no longer held here (held: {', '.join(versions)})")
        return versions[version]


def runtimes_dir() -> Path:
    """Where ``frender blender add`` installs: $FRENDER_BLENDERS, else the user's data folder."""
    if where := os.environ.get("FRENDER_BLENDERS"):
        return Path(where)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "frender" / "blender"


def bpy_python(version: str) -> str:
    """The Python a `bpy` version needs from PyPI: 3.11 up to 5.0, 3.13 from 5.1 on."""
    parsed = _parse(version)
    if parsed is None or parsed[:2] < (4, 2):
        raise NoRuntime(f"bpy {version} is not installable here: PyPI has 4.2 to 5.0 for Python 3.11, 5.1 and later for 3.13")
    return "3.11" if parsed[:2] <= (5, 0) else "3.13"


def _find_python(minor: str) -> Path:
    """A working ``python3.X``: on PATH, else where pyenv keeps it."""
    candidates = [shutil.which(f"python{minor}")]
    candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{minor}*/bin/python{minor}"))
    if sys.version.startswith(minor + "."):
        candidates.insert(0, sys.executable)
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return Path(candidate)
    raise NoRuntime(f"this Blender needs Python {minor}, and no python{minor} runs here: install it (e.g. your system's python{minor} package)")


def _bpy_version(python: Path) -> str | None:
    """The version of the `bpy` that ``python`` imports ("4.2.23"), or None."""
    done = subprocess.run(
        [str(python), "-E", "-c", "import bpy; print(bpy.app.version_string.split()[0])"], capture_output=True, text=True
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def add_runtime(version: str, *, root: Path | None = None) -> Path:
    """Install `bpy` ``version`` ("4.2" takes its newest patch) in an environment of its own; pip shows its progress.

    Returns the runtime's folder, named by the exact version installed. Installing a version already held is a no-op.
    """
    root = root or runtimes_dir()
    python = _find_python(bpy_python(version))
    spec = f"bpy=={version}" if len(_parse(version) or ()) == 3 else f"bpy=={version}.*"
    staging = root / f".adding-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), "-m", "venv", str(staging)], check=True)
    pip = [str(staging / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", spec]
    if subprocess.run(pip).returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise NoRuntime(f"pip could not install {spec} for Python {bpy_python(version)} (see its message above)")
    installed = _bpy_version(staging / "bin" / "python")
    if installed is None:
        shutil.rmtree(staging, ignore_errors=True)
        raise NoRuntime(f"{spec} installed, but its bpy does not import")
    final = root / installed
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return final


def held_runtimes(blenders: Sequence[str] = (), *, root: Path | None = None, device: str = "CPU") -> list[BlenderBackend]:
    """The Blenders a node holds: each ``--blender`` given (a version added here, or an executable), else all added
    here plus the default (this Python's bpy, else blender on PATH)."""
    root = root or runtimes_dir()
    added = {p.name: p for p in sorted(root.glob("[0-9]*")) if (p / "bin" / "python").exists()} if root.is_dir() else {}
    if not blenders:
        held: list[BlenderBackend] = [BpyBackend(p / "bin" / "python", device) for p in added.values()]
        try:
            held.insert(0, find_backend(device=device))
        except BlenderNotFound:
            if not held:
                raise
        return held
    backends: list[BlenderBackend] = []
    for given in blenders:
        wanted = _parse(given)
        if wanted is None:
            backends.append(find_backend(given, device=device))  # an executable, by path or name
            continue
        matching = [name for name in added if (_parse(name) or ())[: len(wanted)] == wanted]
        if matching:
            backends.append(BpyBackend(added[max(matching, key=lambda v: _parse(v) or ())] / "bin" / "python", device))
        elif (own := _bpy_version(Path(sys.executable))) is not None and (_parse(own) or ())[: len(wanted)] == wanted:
            backends.append(BpyBackend(sys.executable, device))
        else:
            raise NoRuntime(f"--blender {given}: no Blender {given} is held here; `frender blender add {given}` installs it")
    return backends
