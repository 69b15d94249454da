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
5. A frame recalled after OUT got it (a friend it rested on was caught forging)
   is deleted from OUT at once, and the job file notes how many recalls OUT has
   acted on per frame (``"recalls": {"12": 1}``); only a copy fetched after the
   latest recall is written in its place (``Recalls``), so OUT is right once the
   job ends, and a fetch run later replaces what an earlier one wrote.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from frender.apps import artist
from frender.apps.requester_messages import Recall

__all__ = [
    "STATE_FILE", "JobState", "Recalls", "cancel_command", "fetch_command", "frame_regex", "held", "job_folders", "numbered",
    "read_state", "remember_folder", "shown",
]

STATE_FILE = ".frender-job.json"
# OUT's job file as JSON reads it (Rule 1): only "job" is known to be an int; every other value is as the file holds it.
JobState = dict[str, Any]
_PROBE = 987654321  # a frame number longer than any padding, to find where the number sits in a name


def read_state(out: Path) -> JobState | None:
    """OUT's job file as a dict with a "job", or None when there is none (or it is unreadable)."""
    try:
        saved = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("job"), int) else None


def write_state(out: Path, saved: JobState) -> None:
    """OUT's job file, written whole, then renamed (Rule 1)."""
    partial = out / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(saved))
    partial.replace(out / STATE_FILE)


class Recalls:
    """Rule 5: which recall of each frame OUT's file follows; frames recalled after OUT got them are deleted."""

    def __init__(self, out: Path, file_name: Callable[[int], str]) -> None:
        self.out = out
        self.file_name = file_name
        saved = read_state(out) or {}
        raw = saved.get("recalls")
        self.seen: dict[int, int] = {}  # frame -> the recalls acted on: OUT's file (if any) was fetched after them
        if isinstance(raw, dict):
            self.seen = {int(k): v for k, v in raw.items() if isinstance(k, str) and k.isdigit() and isinstance(v, int)}

    def generation(self, frame: int) -> int:
        """How many recalls of ``frame`` a copy fetched now follows."""
        return self.seen.get(frame, 0)

    def take(self, recalls: Iterable[Recall]) -> list[tuple[Recall, bool]]:
        """The recalls OUT has not acted on, each with whether OUT held the frame: its file is deleted now and the
        count noted in the job file (deleted first: a crash between the two leaves nothing withdrawn in OUT)."""
        newer: list[tuple[Recall, bool]] = []
        for r in recalls:
            if r.times <= self.seen.get(r.frame, 0):
                continue
            target = self.out / self.file_name(r.frame)
            held = target.is_file()
            target.unlink(missing_ok=True)
            self.seen[r.frame] = r.times
            newer.append((r, held))
        if newer:
            saved = read_state(self.out)
            if saved is not None:
                write_state(self.out, {**saved, "recalls": {str(f): n for f, n in sorted(self.seen.items())}})
        return newer


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


def _pattern_of(saved: JobState) -> re.Pattern[str]:
    try:
        return frame_regex(saved.get("name") or "frame_####", saved.get("extension", ".png"))
    except ValueError:
        return frame_regex("frame_####", ".png")


def held(out: Path, saved: JobState) -> list[int]:
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
