"""Where a benchmark's figures are written: bench/results.json, each entry with the commit that produced it.

Every entry a benchmark writes carries ``commit`` (``git rev-parse --short HEAD``
when it was written) and ``dirty`` (whether the tree had changes to tracked
files then), so a figure is never mistaken for one of a later commit's code.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "provenance", "stamp", "update"]

RESULTS = Path(__file__).resolve().with_name("results.json")
_REPO = Path(__file__).resolve().parent.parent


def provenance() -> dict[str, Any]:
    """``{"commit": short hash of HEAD, "dirty": tracked files changed}``; ``None`` for both outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    # results.json itself is rewritten by every run: its changes do not make the figures another code's.
    changed = [line for line in status.splitlines() if not line.endswith("bench/results.json")]
    return {"commit": commit, "dirty": bool(changed)}


def stamp(entries: dict[str, Any], mark: dict[str, Any] | None = None) -> dict[str, Any]:
    """``entries`` with the provenance (``mark``, taken now if not given) added to each dict entry."""
    mark = provenance() if mark is None else mark
    for value in entries.values():
        if isinstance(value, dict):
            value.update(mark)
    return entries


def update(entries: dict[str, Any], out: Path = RESULTS, mark: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``entries``, stamped with ``mark`` (the provenance when the benchmarks started; now if not given), into
    ``out``, keeping every other key as it was; returns the whole file's content."""
    data = json.loads(out.read_text()) if out.is_file() else {}
    data.update(stamp(entries, mark))
    out.write_text(json.dumps(data, indent=2) + "\n")
    return data
