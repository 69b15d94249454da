"""The artist's output folder: which job it follows, which frames it holds, and how they are named.

Rules kept here:

1. ``OUT/.frender-job.json`` names the one job whose frames OUT receives; it is
   read here and nowhere else, and a damaged one reads as none.
2. Frames are found by the job's own naming pattern (the file's output path,
   ``long_####``, ``shot_####.exr``, ``take_###``, with Blender's ``#`` rules as
   ``artist.frame_file`` applies them), never by a fixed ``frame_####``.
3. Every command printed to a person is whole: the job, the requester, ``--out``
   and ``--home``, each quoted for a POSIX shell, so pasting it does the same job.
4. The client's home remembers which folder each of its jobs writes to
   (``HOME/jobs.json``, by requester and job), so ``frender jobs`` can say.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from frender.apps import artist

__all__ = [
    "STATE_FILE", "cancel_command", "fetch_command", "frame_regex", "held", "job_folders", "numbered", "read_state", "remember_folder", "shown",
]

STATE_FILE = ".frender-job.json"
_PROBE = 987654321  # a frame number longer than any padding, to find where the number sits in a name


def read_state(out: Path) -> dict | None:
    """OUT's job file as a dict with a "job", or None when there is none (or it is unreadable)."""
    try:
        saved = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("job"), int) else None


def _folders_file(home: Path) -> Path:
    return home / "jobs.json"


def job_folders(home: Path, requester: str) -> dict[int, str]:
    """The folder each of my jobs at ``requester`` writes to, as the submits and fetches from ``home`` left them (Rule 4)."""
    try:
        known = json.loads(_folders_file(home).read_text())
    except (OSError, ValueError):
        return {}
    at = known.get(requester) if isinstance(known, dict) else None
    return {int(job): str(out) for job, out in at.items() if job.isdigit()} if isinstance(at, dict) else {}


def remember_folder(home: Path, requester: str, job: int, out: Path) -> None:
    """Note that ``job`` at ``requester`` writes to ``out`` (Rule 4); written whole, then renamed."""
    try:
        known = json.loads(_folders_file(home).read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    known.setdefault(requester, {})[str(job)] = str(out.resolve())
    home.mkdir(parents=True, exist_ok=True)
    partial = _folders_file(home).with_suffix(".json.partial")
    partial.write_text(json.dumps(known, indent=1))
    partial.replace(_folders_file(home))


def frame_regex(name: str, extension: str) -> re.Pattern[str]:
    """A pattern matching exactly the file names ``artist.frame_file(name, n, extension)`` gives; group 1 is n."""
    probe = artist.frame_file(name, _PROBE, extension)
    before, _, after = probe.rpartition(str(_PROBE))
    return re.compile(f"^{re.escape(before)}(-?\\d+){re.escape(after)}$")


def shown(name: str, extension: str) -> str:
    """The naming pattern as people read it: ``take_###.png``, ``long_####.png`` for ``long_``."""
    run = re.findall(r"#+", name)
    return artist.frame_file(name, _PROBE, extension).replace(str(_PROBE), run[-1] if run else "####")


def numbered(paths: list[Path], pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """The paths whose names match ``pattern``, with their frame numbers, in frame order."""
    found = [(int(m.group(1)), p) for p in paths if (m := pattern.match(p.name)) and p.is_file()]
    return sorted(found)


def _pattern_of(saved: dict) -> re.Pattern[str]:
    try:
        return frame_regex(saved.get("name") or "frame_####", saved.get("extension", ".png"))
    except ValueError:
        return frame_regex("frame_####", ".png")


def held(out: Path, saved: dict) -> list[int]:
    """The frames of the job ``saved`` names that are in OUT, found by the job's naming pattern."""
    if not out.is_dir():
        return []
    return [frame for frame, _ in numbered(list(out.iterdir()), _pattern_of(saved))]


def _home_option(home: Path | None) -> str:
    return f" --home {shlex.quote(str(home))}" if home is not None else ""


def fetch_command(job: int, requester: str, out: Path | str, home: Path | None) -> str:
    """The command that follows ``job`` and fetches its final frames into ``out``."""
    return f"frender fetch {job} --requester {shlex.quote(requester)} --out {shlex.quote(str(out))}{_home_option(home)}"


def cancel_command(job: int, requester: str, home: Path | None) -> str:
    """The command that stops ``job``."""
    return f"frender cancel {job} --requester {shlex.quote(requester)}{_home_option(home)}"
