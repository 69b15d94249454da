"""The walls around an untrusted render: environment, bubblewrap, resource limits.

Theory of operation:

1. Blender always starts from a clean environment: no PYTHONPATH, no OCIO or
   other inherited variable, HOME and every Blender user directory pointed at
   empty folders of a private run directory, so no add-on, startup file or
   preference of the friend's own Blender is loaded.
2. Where bubblewrap exists, the process sees a fresh root: /usr, the few /etc
   files the dynamic linker and fonts need, Blender's own install (read-only),
   the job directory (writable for a render, read-only for an inspection), the
   private run directory, a private /tmp, and no network. The friend's home
   directory is simply never mounted.
3. Memory is bounded with RLIMIT_AS, set in the child before exec, so it holds
   for bwrap and Blender alike; core dumps are off so a crash writes nothing.
   A friend's renders also run niced there, so the owner's programs come first.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["sandbox_available"]

# Read-only system paths besides /usr: the linker cache and font configuration.
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts", "/etc/alternatives")
# Top-level names that merged-/usr systems make symlinks into /usr.
USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@functools.cache
def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can build a sandbox without network here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    # The mounts every sandbox makes: a container may let bwrap in but refuse it a /proc (a render would fail).
    probe = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def clean_environment(run_dir: Path) -> dict[str, str]:
    """The whole environment Blender gets: empty user dirs, nothing inherited."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(run_dir / "home"),
        "TMPDIR": str(run_dir / "tmp"),
    }
    for name in ("CONFIG", "SCRIPTS", "DATAFILES", "RESOURCES", "EXTENSIONS"):
        env[f"BLENDER_USER_{name}"] = str(run_dir / name.lower())
    for value in env.values():
        if value.startswith(str(run_dir)):
            Path(value).mkdir(parents=True, exist_ok=True)
    return env


def bwrap_prefix(*, run_dir: Path, job_dir: Path, job_writable: bool, install_dirs: Iterable[str]) -> list[str]:
    """The bubblewrap command line that wraps Blender in the sandbox described above."""
    # No --die-with-parent: its signal fires when the *thread* that forked exits,
    # and trio forks from worker threads that retire after ~10 s idle, which
    # killed every render longer than that. A render whose friend died still
    # ends: its stdout pipe is gone, so its next progress line kills it (EPIPE).
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all"]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in USR_LINKS:
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in SYSTEM_FILES:
        args += ["--ro-bind-try", name, name]
    # CPU topology lets Cycles and TBB size their thread pools.
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for directory in sorted(set(install_dirs)):
        args += ["--ro-bind", directory, directory]
    args += ["--bind", str(run_dir), str(run_dir)]
    args += ["--bind" if job_writable else "--ro-bind", str(job_dir), str(job_dir)]
    args += ["--chdir", str(job_dir), "--"]
    return args


# Sets the limits, then becomes the command: run as ``python -I -S -c`` before Blender (and before bubblewrap, so
# everything it starts inherits them). A preexec function would run Python in the forked child of a process with
# threads (trio's, the comparison pool's), where a lock another thread held at the fork can hang it for ever.
_LIMITS_SHIM = """\
import os, resource, sys
memory, nice = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if memory > 0:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
if nice > 0:
    os.nice(nice)
os.execvp(sys.argv[3], sys.argv[3:])
"""


def limited(argv: list[str], memory_bytes: int | None, *, nice: int = 0) -> list[str]:
    """``argv`` run with its address space capped at ``memory_bytes`` (None: not capped), core dumps off and its
    priority lowered by ``nice``: the limits set by a small Python that then executes ``argv`` in its place."""
    return [sys.executable, "-I", "-S", "-c", _LIMITS_SHIM, str(memory_bytes or 0), str(max(nice, 0)), *argv]
