"""Uploads and who owns them: the artists' files held by a requester.

Rule 1: bytes are content-addressed and shared on disk (``uploads/{sha256}.blend``),
        but an upload belongs to the key that put it: a job may name only files
        its submitter uploaded, and ``missing`` answers a key about its own files
        only (no oracle for what others hold). An account that names another's
        file is told to upload it, and then owns it too.
Rule 2: ownership survives a restart: each owner's upload leaves a marker
        ``uploads/owners/{digest of key}/{sha256}`` holding the file's size,
        written (fsynced, renamed) before the put is answered. Its time is the
        upload's; it expires with the file (``ttl``), and a marker whose file is
        gone owns nothing.
Rule 3: a key's quota counts its markers whose file is still here, plus the
        puts it has open (soft, reserved until their body is due). A key's
        markers are read from disk once, then kept in memory beside them.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["Uploads", "is_sha256"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: object) -> bool:
    return isinstance(text, str) and _SHA256.fullmatch(text) is not None


class Uploads:
    """The uploads folder: files by sha256, and per key the ones it uploaded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[str, dict[str, tuple[int, float]]] = {}  # soft: key -> sha256 -> (size, body due by, trio time)
        self._held: dict[str, dict[str, int]] = {}  # key -> sha256 -> size: its markers, read from disk once per key

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.blend"

    def _owner_dir(self, key: str) -> Path:
        return self.root / "owners" / hashlib.sha256(key.encode()).hexdigest()

    def owns(self, key: str, sha256: str) -> bool:
        """Whether ``key`` uploaded ``sha256`` and the file is still here."""
        return is_sha256(sha256) and (self._owner_dir(key) / sha256).is_file() and self.path(sha256).is_file()

    def missing(self, key: str, sha256s: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``sha256s`` that ``key`` must upload itself (whoever else holds them)."""
        return tuple(s for s in sha256s if not self.owns(key, s))

    def _held_by(self, key: str) -> dict[str, int]:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = {}
            folder = self._owner_dir(key)
            for marker in folder.iterdir() if folder.is_dir() else ():
                if is_sha256(marker.name) and self.path(marker.name).is_file():
                    held[marker.name] = _size_in(marker)
        return held

    def used(self, key: str, now: float, *, besides: str = "") -> int:
        """Bytes ``key`` holds here: its files still on disk and its open puts (``besides`` left out)."""
        held = self._held_by(key)
        total = sum(size for sha, size in held.items() if sha != besides)
        return total + sum(size for sha, (size, due) in self._open.get(key, {}).items() if sha != besides and sha not in held and now <= due)

    def reserve(self, key: str, sha256: str, size: int, due: float) -> None:
        """An open put counts against the quota until ``due`` (trio time), so concurrent puts cannot pass it together."""
        self._open.setdefault(key, {})[sha256] = (size, due)

    def arrived(self, key: str, sha256: str, size: int) -> None:
        """The body is in place: ``key`` owns it (durably, before the put is answered)."""
        self._open.get(key, {}).pop(sha256, None)
        folder = self._owner_dir(key)
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / sha256
        temp = folder / f".{sha256}.part"
        with temp.open("w") as file:
            file.write(str(size))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, marker)
        self._held_by(key)[sha256] = size

    def expire(self, oldest: float, now: float) -> None:
        """Delete files and markers from before ``oldest`` (wall-clock, file times), markers of gone files,
        and open puts past their due time (``now``, trio time). A job keeps its own link to its files."""
        if self.root.is_dir():
            for path in self.root.glob("*.blend"):
                _unlink_if_older(path, oldest)
        owners = self.root / "owners"
        if owners.is_dir():
            for folder in owners.iterdir():
                for marker in folder.iterdir() if folder.is_dir() else ():
                    if is_sha256(marker.name) and not self.path(marker.name).is_file():
                        marker.unlink(missing_ok=True)
                    else:
                        _unlink_if_older(marker, oldest)
        for opened in self._open.values():
            for sha in [sha for sha, (_, due) in opened.items() if now > due]:
                del opened[sha]
        for key, held in self._held.items():
            folder = self._owner_dir(key)
            for sha in [sha for sha in held if not (folder / sha).is_file()]:
                del held[sha]


def _size_in(marker: Path) -> int:
    try:
        return int(marker.read_text() or 0)
    except (OSError, ValueError):
        return 0


def _unlink_if_older(path: Path, oldest: float) -> None:
    try:
        if path.stat().st_mtime < oldest:
            path.unlink()
    except FileNotFoundError:
        pass
