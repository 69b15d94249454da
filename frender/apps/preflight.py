"""A submit's checks on the artist's own machine, before anything is uploaded.

The packed tree's main .blend is inspected by the artist's Blender, sandboxed
like the requester's inspection, and the request is checked against it with
the requester's own rule (``artist.check_request``): a file that can never
render (no camera, no scene), a video output, missing files, frames outside
the range stop here, in ``--dry-run`` as in a submit, instead of after the
upload. Without a Blender here, or with one older than the file, the
requester's inspection alone decides, and the artist is told so.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from frender import blender
from frender.apps import artist, pack

__all__ = ["check_before_upload", "consent", "dry_run"]

log = logging.getLogger("frender.client")


async def check_before_upload(
    packed: pack.Packed, frames: tuple[int, ...], *, allow_outside: bool, allow_missing: bool, backend: blender.Backend | None = None
) -> blender.BlendInfo | None:
    """The main file's facts, or RequestRefused saying why the requester would refuse this submit.

    ``backend``: the Blender to inspect with (default: the one ``find_backend`` finds); None comes back when
    no Blender here can read the file, and the requester's inspection decides.
    """
    try:
        backend = backend or blender.find_backend()
    except blender.BlenderNotFound:
        log.warning("no Blender here to check the file before the upload: the requester checks it")
        return None
    try:
        info = await blender.inspect(backend, packed.root / packed.manifest.main, job_dir=packed.root)
    except blender.NotABlendFile as exc:
        raise artist.RequestRefused("bad-blend", str(exc).splitlines()[0]) from None
    except blender.BlenderError as exc:  # a newer file than this Blender, a crash: the requester's Blender decides
        log.warning("this Blender cannot check the file before the upload (%s): the requester checks it", str(exc).splitlines()[0])
        return None
    artist.check_request(info, frames, allow_outside=allow_outside, allow_missing=allow_missing)
    return info


def dry_run(
    blend: Path, frames: tuple[int, ...], *, include_outside: bool, allow_outside: bool, allow_missing: bool, keys: tuple[Path, ...],
    backend: blender.Backend | None = None,
) -> tuple[list[str], str | None]:
    """What ``submit --dry-run`` prints (the tree, missing and outside files), and why a submit would stop (None: it would go)."""
    try:
        packed = pack.pack(blend, include_outside=True, keys=keys)
    except pack.PackRefused as exc:
        return [], str(exc)
    try:
        lines = pack.describe(packed)
        if packed.outside and not include_outside:
            lines.append(f"{len(packed.outside)} files lie outside the .blend's folder: submit asks before sending them (--include-outside sends them)")
        if packed.missing and not allow_missing:
            return lines, f"{len(packed.missing)} missing files: a submit would be refused (--allow-missing renders without them)"
        try:
            trio.run(lambda: check_before_upload(packed, frames, allow_outside=allow_outside, allow_missing=allow_missing, backend=backend))
        except artist.RequestRefused as exc:
            return lines, f"a submit would be refused: {exc.reason} ({exc.code})"
        return lines, None
    finally:
        shutil.rmtree(packed.root, ignore_errors=True)


def consent(blend: Path, *, keys: tuple[Path, ...], ask: Callable[[str], bool], interactive: bool | None = None) -> tuple[bool, str | None]:
    """Whether the artist agrees to send files from outside the .blend's folder, and why a submit stops here.

    Nothing to agree to: (False, None), and packing sends nothing from outside. Forbidden files: (False,
    the refusal). Outside files: asked with ``ask(text)`` when ``interactive`` (default: stdin is a
    terminal), else (False, what to do).
    """
    try:
        checked = pack.review(blend, keys=keys)
    except Exception:  # the tracer cannot read it: packing refuses it or sends it alone, and says so
        return False, None
    if checked.forbidden:
        return False, checked.refusal()
    if not checked.outside:
        return False, None
    if interactive if interactive is not None else sys.stdin.isatty():
        question = pack.outside_text(checked).rsplit("\n", 1)[0] + "\nsend them?"
        return (True, None) if ask(question) else (False, "nothing was sent")
    return False, pack.outside_text(checked)
