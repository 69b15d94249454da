"""What may leave an artist's disk: every file a submit would pack, checked before anything is copied.

A .blend from the internet can point an unused datablock (kept by a fake
user) at any file of the artist's machine, and packing follows datablock
paths. So each file the packer would copy is reviewed, named with the
datablock that uses it:

1. Never, whatever the artist says: a path with a hidden folder or file in it
   (inside the project folder: below it), a known place of secrets (``~/.ssh``,
   ``~/.aws``, ``~/.gnupg``, keyrings, ``~/.netrc``, ``~/.docker``, ``~/.kube``,
   shell histories, ``.env`` files, fRender's own homes and keys, ``/proc``...),
   a file whose name or first bytes look like a private key. The artist fixes
   the file: the refusal names the datablock and the path.
2. Each file is of the kind its datablock says, read from its first bytes: an
   image is an image format Blender reads, a font a font, a library a .blend,
   a sound a sound, a cache an Alembic/USD file, a volume an OpenVDB file.
   Kinds without a signature (modifier caches, IES files) are checked by place
   only.
3. A file from outside the .blend's folder (after resolving links) leaves only
   with the artist's consent (``frender submit --include-outside``, or a yes at
   the prompt).

Both the written path and the resolved one are judged, so a link inside the
project cannot smuggle a file from elsewhere.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from attrs import frozen

from frender.blender import NotABlendFile, read_blend_header

__all__ = ["Candidate", "Review", "forbidden_reason", "frender_homes", "homes", "kind_of", "review", "shown", "sniff"]

HEAD_BYTES = 4096  # enough for every signature below, and for a PEM header after a comment
# Folders under a home that hold secrets: named in refusals (any hidden folder is refused anyway).
SECRET_HOME_DIRS = {
    ".ssh": "SSH keys",
    ".aws": "AWS credentials",
    ".gnupg": "GnuPG keys",
    ".docker": "Docker credentials",
    ".kube": "Kubernetes credentials",
    ".azure": "Azure credentials",
    ".config/gcloud": "Google Cloud credentials",
    ".config/keyrings": "keyrings",
    ".local/share/keyrings": "keyrings",
    ".local/share/kwalletd": "keyrings",
    ".password-store": "passwords",
    ".frender": "fRender keys",
    "Library/Keychains": "keychains",
}
SECRET_ROOTS = {"/proc": "process memory", "/sys": "kernel state", "/dev": "devices", "/run/secrets": "secrets",
                "/var/run/secrets": "secrets", "/etc/ssh": "SSH host keys", "/etc/shadow": "passwords",
                "/etc/gshadow": "passwords"}  # fmt: skip
SECRET_NAMES = re.compile(
    r"(?i)^(?:\.env(?:\..*)?|.*\.env|\.?netrc|_netrc|\.pgpass|\.git-credentials|.*_history|\.histfile"
    r"|id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?|identity\.pem|.*\.(?:pem|key|p12|pfx|ppk|kdbx|keystore|jks|gpg))$"
)
KEY_TEXT = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File|-----BEGIN PGP PRIVATE")
# BAT's DNA type names, as an artist reads them.
KIND_NAMES = {"Image": "image", "VFont": "font", "Library": "library", "bSound": "sound", "MovieClip": "movie clip",
              "CacheFile": "cache", "Volume": "volume", "Strip": "sequencer strip", "StripData": "sequencer strip"}  # fmt: skip
IMAGE_SOURCE_MOVIE = 3  # Image.source: a movie file read as an image


@frozen(kw_only=True)
class Candidate:
    """One datablock's file(s) a pack would copy."""

    written: str  # the path as the file writes it
    used_by: str  # "image 'wood' in shot.blend"
    kind: str  # what the datablock says it is: "image", "font", "library", "movie", "sound", ... ("" unknown)
    files: tuple[Path, ...]  # absolute, as the datablock names them (a sequence expanded)


@frozen(kw_only=True)
class Review:
    """What a pack of these candidates would send, judged."""

    forbidden: tuple[tuple[Candidate, str], ...]  # never sent: the candidate and why
    outside: tuple[Candidate, ...]  # outside the .blend's folder: sent only with consent
    approved: frozenset[Path]  # every file that may be copied (resolved), consent given

    def refusal(self) -> str:
        """The text of a submit refused for forbidden files: each datablock, its path and what to do."""
        lines = [f"{c.used_by} points at {shown(path)}: {why}" for c, why in self.forbidden for path in _first(c)]
        return (
            "refused to pack files that must not leave this machine:\n  " + "\n  ".join(lines)
            + "\nopen the .blend in Blender and point each datablock at a file of the project (or remove it: an unused"
            " one is kept by its fake user; File > Clean Up > Purge removes the rest); no option sends these"
        )

    def outside_text(self) -> str:
        """The files from outside the project folder, one a line."""
        return "\n".join(f"  {shown(path)}  (used by {c.used_by})" for c in self.outside for path in c.files)


def _first(candidate: Candidate) -> tuple[Path, ...]:
    return candidate.files[:1] or (Path(candidate.written),)


def shown(path: Path) -> str:
    """A path as the artist knows it, ``~`` for the home folder."""
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if home != "/" and (text == home or text.startswith(home + os.sep)) else text


def homes() -> tuple[Path, ...]:
    """The artist's home folders: $HOME and the account's own (they differ under sudo or a test's HOME)."""
    found = [Path.home()]
    try:
        found.append(Path(pwd.getpwuid(os.getuid()).pw_dir))
    except (KeyError, OSError):
        pass
    return tuple(dict.fromkeys(p for p in found if str(p) not in ("", "/")))


def frender_homes() -> tuple[Path, ...]:
    """fRender's own homes on this machine (keys, uploads, caches): $FRENDER_HOME, else ~/.frender."""
    return (Path(os.environ.get("FRENDER_HOME") or Path.home() / ".frender"),)


def forbidden_reason(path: Path, project: Path, *, keys: Sequence[Path] = ()) -> str | None:
    """Why ``path`` (absolute, as written or resolved) may never leave this machine; None when it may.

    ``project`` is the .blend's folder, resolved; ``keys`` are fRender homes (the client's own).
    """
    path = Path(os.path.normpath(path))
    for place in keys:
        place = Path(os.path.normpath(place.absolute()))
        if path == place or path.is_relative_to(place) or path.is_relative_to(place.resolve()):
            return f"it lies in fRender's key folder {shown(place)}"
    for home in homes():
        for folder, what in SECRET_HOME_DIRS.items():
            if path.is_relative_to(home / folder):
                return f"it lies in {shown(home / folder)}, where {what} are kept"
    for root, what in SECRET_ROOTS.items():
        if path.is_relative_to(root):
            return f"it lies in {root} ({what})"
    if SECRET_NAMES.match(path.name):
        return f"its name {path.name!r} is one of keys, credentials or shell histories"
    parts = path.relative_to(project).parts if path.is_relative_to(project) else path.parts[1:]
    hidden = [part for part in parts if part.startswith(".") and part not in (".", "..")]
    if hidden:
        return f"it lies under the hidden {'folder' if hidden[0] != parts[-1] else 'file'} {hidden[0]!r}, where settings and secrets are kept"
    return None


def _head(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read(HEAD_BYTES)


def _image(head: bytes) -> bool:
    """A format Blender's image reader opens (PNG, JPEG, TIFF, EXR, HDR, BMP, TGA, SGI, DDS, JPEG 2000, DPX, Cineon, WebP, PSD)."""
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+",
                        b"\x76\x2f\x31\x01", b"#?RADIANCE", b"#?RGBE", b"BM", b"\x01\xda", b"DDS ",
                        b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"SDPX", b"XPDS",
                        b"\x80\x2a\x5f\xd7", b"\xd7\x5f\x2a\x80", b"8BPS")):  # fmt: skip
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return _targa(head)


def _targa(head: bytes) -> bool:
    """Targa has no signature: its 18-byte header must make sense (colour map type, image type, size, depth)."""
    if len(head) < 18:
        return False
    width, height = int.from_bytes(head[12:14], "little"), int.from_bytes(head[14:16], "little")
    return head[1] in (0, 1) and head[2] in (1, 2, 3, 9, 10, 11) and width > 0 and height > 0 and head[16] in (8, 15, 16, 24, 32)


def _movie(head: bytes) -> bool:
    """A video container FFmpeg reads (MP4/MOV, Matroska/WebM, AVI, MPEG, Ogg, FLV, ASF, GIF)."""
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
        or head.startswith((b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"OggS", b"FLV",
                            b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"GIF87a", b"GIF89a"))
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47)  # MPEG transport stream
    )


def _sound(head: bytes) -> bool:
    """An audio file (WAV, AIFF, MP3, AAC, FLAC, Ogg, M4A, WMA) or a video to take the sound from."""
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
        or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
        or head.startswith((b"ID3", b"fLaC", b"OggS", b"MAC "))
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MPEG audio / ADTS frame sync
        or _movie(head)
    )


def _font(head: bytes) -> bool:
    """A font FreeType reads: TrueType, OpenType, collections, WOFF/WOFF2, Type 1 (PFB or PFA)."""
    return head.startswith((b"\x00\x01\x00\x00", b"OTTO", b"true", b"typ1", b"ttcf", b"wOFF", b"wOF2", b"\x80\x01",
                            b"%!PS-AdobeFont", b"%!FontType1"))  # fmt: skip


def _cache(head: bytes) -> bool:
    """An Alembic (Ogawa or HDF5) or USD (crate, text, zip) cache."""
    return head.startswith((b"Ogawa", b"\x89HDF\r\n\x1a\n", b"PXR-USDC", b"#usda", b"PK\x03\x04"))


def _volume(head: bytes) -> bool:
    """An OpenVDB file (its magic number 0x56444220, little-endian)."""
    return head.startswith(b" BDV")


def _library(path: Path) -> bool:
    """A .blend: plain, gzip or zstd, by its header."""
    try:
        header = read_blend_header(path)
    except NotABlendFile:
        return False
    if header.version is not None:
        return True
    try:  # a zstd header the stdlib-only reader could not see: decompress its first bytes where zstandard is installed
        import zstandard
    except ImportError:
        return True
    with open(path, "rb") as file, zstandard.ZstdDecompressor().stream_reader(file) as reader:
        try:
            return reader.read(7) == b"BLENDER"
        except zstandard.ZstdError:
            return False


SNIFFERS = {
    "image": ("an image Blender reads", _image),
    "movie": ("a movie or image", lambda head: _movie(head) or _image(head)),
    "font": ("a font (TrueType, OpenType, WOFF or Type 1)", _font),
    "sound": ("a sound", _sound),
    "cache": ("an Alembic or USD cache", _cache),
    "volume": ("an OpenVDB volume", _volume),
}


def sniff(path: Path, kind: str) -> str | None:
    """Why the file at ``path`` is not the ``kind`` its datablock says; None when it is (or the kind has no signature)."""
    if path.is_dir():
        return None
    try:
        head = _head(path)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if KEY_TEXT.search(head):
        return "it holds a private key"
    if kind == "library":
        return None if _library(path) else "a library must be a .blend file, and this is not one"
    if kind in SNIFFERS:
        what, test = SNIFFERS[kind]
        return None if test(head) else f"it is used as {kind} but is not {what}"
    return None


def kind_of(dna_type: str, *, image_source: int | None = None, is_sequence: bool = False) -> str:
    """The kind of file a datablock of BAT's DNA type reads ("" when fRender has no signature for it)."""
    if dna_type == "Image":
        return "movie" if image_source == IMAGE_SOURCE_MOVIE else "image"
    if dna_type in ("Strip", "StripData"):
        return "image" if is_sequence else "movie-or-sound"
    return {"VFont": "font", "Library": "library", "bSound": "sound", "MovieClip": "movie", "CacheFile": "cache", "Volume": "volume"}.get(dna_type, "")


def review(blend: Path, candidates: Iterable[Candidate], *, keys: Sequence[Path] = ()) -> Review:
    """Judge every file the candidates would copy (rules 1-3 of the module)."""
    project = blend.resolve().parent
    forbidden: list[tuple[Candidate, str]] = []
    outside: list[Candidate] = []
    approved: set[Path] = {blend.resolve()}
    for candidate in candidates:
        why = None
        for path in candidate.files:
            real = path.resolve()
            why = forbidden_reason(path, project, keys=keys)
            if why is None and real != path and (why := forbidden_reason(real, project, keys=keys)) is not None:
                why = f"it is a link to {shown(real)}, and {why}"
            if why is None:
                kind = candidate.kind
                why = sniff(real, "movie" if kind == "movie-or-sound" else kind)
                if why is not None and kind == "movie-or-sound" and sniff(real, "sound") is None:
                    why = None
            if why is not None:
                forbidden.append((Candidate(written=candidate.written, used_by=candidate.used_by, kind=candidate.kind, files=(path,)), why))
                break
            approved.add(real)
        if why is None and any(not p.resolve().is_relative_to(project) for p in candidate.files):
            outside.append(candidate)
    return Review(forbidden=tuple(forbidden), outside=tuple(outside), approved=frozenset(approved))
