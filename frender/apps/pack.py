"""Packing an artist's .blend with everything it uses into one job tree, uploaded by content.

An artist's file is a .blend plus what it points to: images and sequences,
movie clips, fonts, sounds, caches, linked libraries and what they link.
``pack`` finds every dependency with Blender Asset Tracer (the packer Flamenco
uses; it reads .blend files without Blender), copies them into one tree with
every path rewritten relative inside it, and describes the tree in a manifest:

    {"frender_tree": 1, "main": "shots/a.blend", "files": [[path, sha256, size], ...]}

The manifest is uploaded like any file, named by its sha256, and that sha256
names the job's content (the assignment carries it), so a friend checks the
manifest against the assignment and each file against the manifest. Files are
uploaded by sha256: what the requester already holds is not sent again, and
friends cache them by sha256 across jobs.

Before anything is copied, every file is reviewed (``outgoing.review``): a
file from a hidden folder or a place of secrets, or one that is not what its
datablock says, is refused by name; files from outside the .blend's folder are
packed only with the artist's consent (``include_outside``), under
``_outside_project/N/`` (N numbers their folders), so the tree names no folder
of the artist's machine.

Rules for a tree (checked by ``read_manifest`` on every side): paths are
relative, in POSIX form, with no ``..``, no empty or hidden-dot parts, at most
``MAX_FILES`` files; the main file is one of them and ends in ``.blend``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from attrs import frozen

from frender.apps import outgoing

__all__ = [
    "Dependency",
    "Manifest",
    "PackRefused",
    "Packed",
    "TreeFile",
    "assemble",
    "describe",
    "find_dependencies",
    "is_manifest",
    "missing_text",
    "outside_text",
    "pack",
    "read_manifest",
    "review",
]

log = logging.getLogger("frender.pack")
MAX_FILES = 10_000
MAX_MANIFEST = 4 << 20
MAGIC = b'{"frender_tree": 1'
PART = re.compile(r"[^/\\\0]{1,255}")


@frozen(kw_only=True)
class TreeFile:
    path: str  # relative, POSIX
    sha256: str
    size: int


@frozen(kw_only=True)
class Manifest:
    main: str
    files: tuple[TreeFile, ...]

    def encode(self) -> bytes:
        """Canonical bytes: the same tree always gives the same manifest, hence the same sha256."""
        files = [[f.path, f.sha256, f.size] for f in sorted(self.files, key=lambda f: f.path)]
        return json.dumps({"frender_tree": 1, "main": self.main, "files": files}, separators=(", ", ": ")).encode()

    @property
    def blends(self) -> tuple[str, ...]:
        """Every .blend in the tree, the main one first: each is guarded."""
        others = sorted(f.path for f in self.files if f.path.lower().endswith(".blend") and f.path != self.main)
        return (self.main, *others)


@frozen(kw_only=True)
class Dependency:
    """One file the .blend uses, where it is, and what uses it."""

    path: Path  # absolute, on the artist's disk
    written: str  # the path as the file writes it ("//textures/wood.png")
    used_by: str  # "image 'wood' in shot.blend"
    exists: bool


class PackRefused(Exception):
    """Packing would send what must not leave the artist's machine, or what the artist did not agree to send."""


@frozen(kw_only=True)
class Packed:
    root: Path  # the tree on disk (a temporary folder the caller removes)
    manifest: Manifest
    dependencies: tuple[Dependency, ...]
    outside: tuple[outgoing.Candidate, ...] = ()  # packed from outside the .blend's folder, with consent

    @property
    def missing(self) -> tuple[Dependency, ...]:
        return tuple(d for d in self.dependencies if not d.exists)


def describe(packed: Packed) -> list[str]:
    """What `submit --dry-run` prints: each file of the tree with its size, then each missing file and its user."""
    lines = [f"{f.size:>12,}  {f.path}{'  (main)' if f.path == packed.manifest.main else ''}" for f in sorted(packed.manifest.files, key=lambda f: f.path)]
    total = sum(f.size for f in packed.manifest.files)
    lines.append(f"{total:>12,}  bytes in {len(packed.manifest.files)} files")
    lines += [f"MISSING  {d.written} (used by {d.used_by})" for d in packed.missing]
    lines += [f"OUTSIDE  {outgoing.shown(path)} (used by {c.used_by})" for c in packed.outside for path in c.files]
    return lines


def missing_text(packed: Packed) -> str:
    """One line naming every missing file and what uses it."""
    return "missing files: " + "; ".join(f"{d.written} (used by {d.used_by})" for d in packed.missing)


def is_manifest(data: bytes) -> bool:
    """Whether a job's content file is a tree manifest (a plain .blend never starts this way)."""
    return data.startswith(MAGIC)


def read_manifest(data: bytes) -> Manifest:
    """Parse and check a manifest from a peer; ValueError says what is wrong."""
    if len(data) > MAX_MANIFEST or not is_manifest(data):
        raise ValueError("not a job tree manifest")
    raw = json.loads(data)
    files = raw.get("files")
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise ValueError(f"a tree holds 1 to {MAX_FILES} files")
    parsed = []
    for entry in files:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and isinstance(entry[1], str) and type(entry[2]) is int):
            raise ValueError("each file is [path, sha256, size]")
        path, sha256, size = entry
        check_tree_path(path)
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or size < 0:
            raise ValueError(f"bad sha256 or size for {path!r}")
        parsed.append(TreeFile(path=path, sha256=sha256, size=size))
    paths = [f.path for f in parsed]
    if len(set(p.lower() for p in paths)) != len(paths):
        raise ValueError("a path appears twice in the tree")
    folders = {str(parent) for p in paths for parent in PurePosixPath(p).parents}
    if folders & set(paths):
        raise ValueError("a path is both a file and a folder")
    main = raw.get("main")
    if main not in paths or not str(main).lower().endswith(".blend"):
        raise ValueError("the main file must be a .blend of the tree")
    return Manifest(main=main, files=tuple(parsed))


def assemble(manifest: Manifest, into: Path, source: Callable[[str], Path], *, link: bool) -> Path:
    """Lay the tree out under `into` from files named by sha256 (`source(sha256)`); returns the main .blend.

    Hard links where `link` (the requester's read-only inspection and its own
    renders), copies otherwise (a friend's render must not reach its cache).
    """
    for entry in manifest.files:
        dest = into / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            continue
        if link:
            os.link(source(entry.sha256), dest)
        else:
            shutil.copyfile(source(entry.sha256), dest)
    return into / manifest.main


def check_tree_path(path: str) -> None:
    """A path inside a tree: relative, POSIX, no parent or current-folder parts, nothing odd."""
    parts = path.split("/")
    if path.startswith("/") or any(not PART.fullmatch(p) or p in (".", "..") for p in parts) or ":" in parts[0]:
        raise ValueError(f"{path!r} is not a plain relative path inside the tree")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def find_dependencies(blend: Path) -> tuple[Dependency, ...]:
    """Every file `blend` uses, recursively through linked libraries, with what uses it."""
    return _trace(blend)[0]


def _trace(blend: Path) -> tuple[tuple[Dependency, ...], tuple[outgoing.Candidate, ...]]:
    """Every file `blend` uses, and the files a pack would copy for each (sequences expanded)."""
    from blender_asset_tracer import trace
    from blender_asset_tracer.trace import file_sequence

    found: dict[tuple[Path, str], Dependency] = {}
    candidates: dict[tuple[Path, str], outgoing.Candidate] = {}
    with _quiet():
        for usage in trace.deps(blend):
            path = usage.abspath
            if usage.is_sequence:
                try:
                    exists = any(p.exists() for p in file_sequence.expand_sequence(path))
                except file_sequence.DoesNotExist:
                    exists = False
            else:
                exists = path.exists()
            dna = usage.block.dna_type_name if hasattr(usage.block, "dna_type_name") else "data"
            name = usage.block_name.decode(errors="replace")[2:]
            user = f"{outgoing.KIND_NAMES.get(dna, dna.lower())} {name!r} in {usage.block.bfile.filepath.name}"
            written = usage.asset_path.decode(errors="replace") if isinstance(usage.asset_path, bytes) else str(usage.asset_path)
            found.setdefault((path, user), Dependency(path=path, written=written, used_by=user, exists=exists))
            if exists and (path, user) not in candidates:
                source = usage.block.get(b"source", default=None) if dna == "Image" else None
                kind = outgoing.kind_of(dna, image_source=source, is_sequence=usage.is_sequence)
                files = tuple(Path(os.path.normpath(f)) for f in usage.files())
                candidates[path, user] = outgoing.Candidate(written=written, used_by=user, kind=kind, files=files)
    return tuple(found.values()), tuple(candidates.values())


def pack(blend: Path, *, into: Path | None = None, include_outside: bool = False, keys: tuple[Path, ...] = ()) -> Packed:
    """Copy `blend` and its dependencies into one tree with paths rewritten inside it; describe it.

    Raises PackRefused, before anything is copied, for a file that must never
    leave this machine (a hidden folder, a place of secrets, not what its
    datablock says) and, unless ``include_outside``, for files from outside the
    .blend's folder. ``keys``: fRender homes of this machine (the client's own).
    """
    from blender_asset_tracer.pack import Packer

    class _Packer(Packer):
        """BAT's packer, placing files from outside the project under _outside_project/N/ (no folder of the artist's named)."""

        def _find_new_paths(self) -> None:
            folders: dict[Path, int] = {}
            for path in sorted(self._new_location_paths):
                absolute = Path(os.path.normpath(path))
                if absolute.is_relative_to(blend.parent):  # inside, written as an absolute path
                    self._actions[path].new_path = Path(self._target_path, absolute.relative_to(blend.parent))
                    continue
                number = folders.setdefault(absolute.parent, len(folders) + 1)
                self._actions[path].new_path = Path(self._target_path, "_outside_project", str(number), absolute.name)

    blend = blend.resolve()
    root = Path(tempfile.mkdtemp(prefix="frender-pack-", dir=into))
    outside: tuple[outgoing.Candidate, ...] = ()
    try:
        dependencies, candidates = _trace(blend)
        checked = outgoing.review(blend, candidates, keys=(*keys, *outgoing.frender_homes()))  # as ``review`` does
        if checked.forbidden:
            raise PackRefused(checked.refusal())
        if checked.outside and not include_outside:
            raise PackRefused(outside_text(checked))
        outside = checked.outside
        with _quiet(), _Packer(blend, blend.parent, str(root)) as packer:
            packer.strategise()
            unreviewed = [p for p in _planned(packer) if p.resolve() not in checked.approved]
            if unreviewed:  # the packer's own trace found more than ours: send nothing rather than something unchecked
                raise PackRefused("refused to pack files that were not reviewed: " + ", ".join(map(str, unreviewed[:8])))
            packer.execute()
            main = Path(packer.output_path)
    except PackRefused:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except Exception as exc:  # the tracer's own errors for a file it cannot read (corrupt, not a .blend)
        unreadable = getattr(exc, "filepath", None)
        if unreadable is not None and Path(unreadable).resolve() != blend:
            shutil.rmtree(root, ignore_errors=True)
            raise PackRefused(
                f"library {Path(unreadable).name!r} that {blend.name} links ({outgoing.shown(Path(unreadable))}) is not a readable"
                f" .blend file ({exc}): relink it in Blender (or remove it); nothing was sent"
            ) from None
        # The main file goes alone; the requester's Blender then says what is wrong
        # with it, or names each file it uses that is not in the tree.
        log.info("%s cannot be traced (%s); it is sent alone", blend.name, exc)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        main = Path(shutil.copyfile(blend, root / _plain_name(blend.name)))
        dependencies = outside = ()
    (root / "pack-info.txt").unlink(missing_ok=True)
    files = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            check_tree_path(relative)
            files.append(TreeFile(path=relative, sha256=sha256_of(path), size=path.stat().st_size))
    manifest = Manifest(main=main.relative_to(root).as_posix(), files=tuple(files))
    return Packed(root=root, manifest=read_manifest(manifest.encode()), dependencies=dependencies, outside=outside)


def review(blend: Path, *, keys: tuple[Path, ...] = ()) -> outgoing.Review:
    """What packing `blend` would send, judged, without copying anything (raises the tracer's errors)."""
    return outgoing.review(blend, _trace(blend.resolve())[1], keys=(*keys, *outgoing.frender_homes()))


def outside_text(checked: outgoing.Review) -> str:
    """Why a submit without consent stops: the files from outside the project, and the flag that sends them."""
    return (
        f"{len(checked.outside)} files the .blend uses lie outside its folder and would be uploaded to the requester"
        f" and every friend of the job:\n{checked.outside_text()}\n"
        "check them, then submit again with --include-outside to send them (or move them into the .blend's folder)"
    )


def _planned(packer: object) -> list[Path]:
    """Every file BAT's packer would copy once executed (as its ``_copy_asset_and_deps`` walks them)."""
    planned: list[Path] = []
    for asset_path, action in packer._actions.items():  # type: ignore[attr-defined]
        if "*" not in str(asset_path) and "<UDIM>" not in asset_path.name and not asset_path.is_dir():
            planned.append(Path(asset_path))
        sequences = [u for u in action.usages if u.is_sequence]
        if sequences:
            planned += [Path(f) for f in sequences[0].files()]
    return planned


def _plain_name(name: str) -> str:
    """A name the manifest accepts for a lone .blend, whatever the artist called it."""
    stem = re.sub(r"[^\w.\- ]", "_", name.removesuffix(".blend")).strip(". ") or "scene"
    return stem[:200] + ".blend"


class _quiet:
    """Blender Asset Tracer logs every missing file as a warning; fRender reports them itself."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("blender_asset_tracer")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc_info: object) -> None:
        self.logger.setLevel(self.level)
