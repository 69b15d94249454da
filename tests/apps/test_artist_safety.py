"""What leaves an artist's machine, and what stops at submit, through the real `frender submit` and a real farm.

The files are made with bpy the way an artist (or a stranger's download) makes
them (make_unsafe.py): an unused image kept by a fake user that points at a fake
``~/.ssh/id_ed25519`` under a temporary HOME, a texture from outside the
project, datablocks whose files are not what they say, a scene without a
camera, a library file with no scene, a video output.
"""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from frender import blender
from frender.apps import artist, outgoing, pack, preflight
from frender.apps import messages as msg
from frender.transports import FileHeader, Identity, RemoteError, connect, file_header, put_file

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def unsafe(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(root, home, cases): the files of make_unsafe.py, and the fake home whose ~/.ssh holds a key."""
    root, home = tmp_path_factory.mktemp("unsafe"), tmp_path_factory.mktemp("home")
    subprocess.run([sys.executable, "-E", "-P", str(HERE / "make_unsafe.py"), "--", str(root), str(home)], check=True, capture_output=True)
    return root, home, json.loads((root / "cases.json").read_text())


async def frender(farm, home: Path, *args: str) -> subprocess.CompletedProcess:
    """`frender submit ...` as the artist types it, HOME the fake home, stdin not a terminal.

    The farm is a master and a requester (real Blender) with no friends: the bound only ends a
    submit that was wrongly accepted (it would follow a job no friend renders, forever).
    """
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "frender", "submit", *args, "--requester", str(farm.requester), "--user", "artist",
               "--home", str(farm.root / "homes" / "artist")]  # fmt: skip
    run = functools.partial(subprocess.run, command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return await trio.to_thread.run_sync(run)


def uploaded(farm) -> list[bytes]:
    """Every file the requester holds from uploads."""
    uploads = farm.root / "homes" / "requester" / "uploads"
    return [p.read_bytes() for p in uploads.rglob("*") if p.is_file()] if uploads.is_dir() else []


async def test_an_unused_image_pointing_at_an_ssh_key_is_never_packed_nor_uploaded(farm, unsafe, tmp_path):
    """A fake-user image reading ~/.ssh/id_ed25519: submit refuses naming the datablock and the path, with or
    without --include-outside, in --dry-run too; the requester never holds the key."""
    root, home, cases = unsafe
    await farm.start()
    blend, key = root / cases["key"]["blend"], Path(cases["key"]["key"])
    for extra in ((), ("--include-outside",), ("--dry-run",)):
        done = await frender(farm, home, str(blend), "--out", str(tmp_path / "out"), *extra)
        assert done.returncode == 1, (extra, done.stdout, done.stderr)
        assert "image 'id_ed25519' in shot.blend points at ~/.ssh/id_ed25519" in done.stderr, (extra, done.stderr)
        assert "SSH keys" in done.stderr and "fake user" in done.stderr
    assert key.read_bytes() not in uploaded(farm)
    assert farm.audit("master")["master"]["jobs"] == []


async def test_files_outside_the_project_leave_only_with_consent(farm, unsafe, tmp_path):
    """A texture from a sibling folder: submit off a terminal refuses, lists it and names --include-outside, sends
    nothing; --dry-run lists it; consent packs it as _outside_project/1/stone.png, a path naming no folder of the artist."""
    root, home, cases = unsafe
    await farm.start()
    blend, texture = root / cases["outside"]["blend"], Path(cases["outside"]["texture"])
    done = await frender(farm, home, str(blend), "--out", str(tmp_path / "out"))
    assert done.returncode == 1 and "--include-outside" in done.stderr and str(texture) in done.stderr, done.stderr
    assert texture.read_bytes() not in uploaded(farm)
    shown = await frender(farm, home, str(blend), "--dry-run")
    assert shown.returncode == 0 and f"OUTSIDE  {texture}" in shown.stdout and "_outside_project/1/stone.png" in shown.stdout
    with pytest.raises(pack.PackRefused, match="--include-outside"):
        pack.pack(blend)
    packed = pack.pack(blend, include_outside=True)
    try:
        assert {f.path for f in packed.manifest.files} == {"shot.blend", "_outside_project/1/stone.png"}
        assert (packed.root / "_outside_project/1/stone.png").read_bytes() == texture.read_bytes()
    finally:
        shutil.rmtree(packed.root)
    # At a terminal the artist is asked; a no sends nothing.
    assert preflight.consent(blend, keys=(), ask=lambda question: str(texture) in question, interactive=True) == (True, None)
    assert preflight.consent(blend, keys=(), ask=lambda question: False, interactive=True) == (False, "nothing was sent")


async def test_at_a_terminal_submit_asks_before_sending_outside_files(farm, unsafe, tmp_path):
    """stdin a terminal: submit lists the outside texture and asks; "n" sends nothing, "y" uploads it."""
    root, home, cases = unsafe
    await farm.start()
    blend, texture = root / cases["outside"]["blend"], Path(cases["outside"]["texture"])
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "frender", "submit", str(blend), "--requester", str(farm.requester), "--user", "artist",
               "--home", str(farm.root / "homes" / "artist"), "--out", str(tmp_path / "out")]  # fmt: skip
    for answer in ("n", "y"):
        terminal, stdin = pty.openpty()
        os.write(terminal, answer.encode() + b"\n")
        run = functools.partial(subprocess.run, command, env=env, stdin=stdin, capture_output=True, text=True, timeout=120)
        try:
            done = await trio.to_thread.run_sync(run)
        finally:
            os.close(stdin)
            os.close(terminal)
        assert str(texture) in done.stdout and "send them?" in done.stdout, done.stdout
        if answer == "n":
            assert done.returncode == 1 and "nothing was sent" in done.stderr, done.stderr
            assert texture.read_bytes() not in uploaded(farm)
        else:  # sent; the requester then refuses the job only because this farm has no friend
            assert texture.read_bytes() in uploaded(farm), done.stderr


def test_a_link_inside_the_project_cannot_smuggle_a_key(unsafe, tmp_path):
    """The texture replaced by a symbolic link to ~/.ssh/id_ed25519: refused by its resolved path, consent or not."""
    root, home, cases = unsafe
    project = Path(shutil.copytree(root / "outside", tmp_path / "outside"))
    (project / "tex" / "stone.png").unlink()
    (project / "tex" / "stone.png").symlink_to(cases["key"]["key"])
    with pytest.raises(pack.PackRefused, match="image 'stone.png' in shot.blend points at .*stone.png: it is a link to .*/\\.ssh/id_ed25519"):
        pack.pack(project / "shots" / "shot.blend", include_outside=True)


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("not_image", "image 'notes' in shot.blend points at .*notes.png: it is used as image but is not an image"),
        ("not_font", "font '.*' in shot.blend points at .*title.woff2: it is used as font but is not a font"),
        ("not_library", "library 'props.blend' that shot.blend links .* is not a readable .blend"),
    ],
)
def test_a_dependency_that_is_not_its_datablocks_kind_is_refused_by_name(unsafe, case, named):
    """An image that is text, a font that is a PNG, a library that is a zip: refused before anything is copied."""
    root, _, cases = unsafe
    with pytest.raises(pack.PackRefused, match=named):
        pack.pack(root / cases[case]["blend"], include_outside=True)


def test_secret_places_and_hidden_folders_never_leave(tmp_path):
    """Keys, credentials, histories, .env files, fRender's homes and hidden folders are refused; a plain texture is not."""
    home, project = Path.home(), tmp_path / "shot"
    forbidden = [
        home / ".aws" / "credentials", home / ".gnupg" / "pubring.kbx", home / ".local/share/keyrings/login.keyring",
        home / ".docker" / "config.json", home / ".kube" / "config", home / ".netrc", home / ".bash_history",
        project / ".env", project / "textures" / ".cache" / "wood.png", project / "server.pem", tmp_path / "id_rsa",
        tmp_path / "keys" / "identity.png", Path("/proc/self/environ"), home / "Pictures" / ".secret" / "a.png",
    ]  # fmt: skip
    for path in forbidden:
        assert outgoing.forbidden_reason(path, project, keys=(tmp_path / "keys",)) is not None, path
    for path in (project / "textures" / "wood.png", tmp_path / "library" / "stone.png"):
        assert outgoing.forbidden_reason(path, project, keys=(tmp_path / "keys",)) is None, path


def test_kinds_are_sniffed_from_the_first_bytes(tmp_path):
    """Each kind accepts its own formats and refuses the others; a private key is refused whatever it claims to be."""
    files = {
        "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "exr": b"\x76\x2f\x31\x01" + b"\0" * 32, "woff2": b"wOF2" + b"\0" * 32,
        "ttf": b"\x00\x01\x00\x00" + b"\0" * 32, "wav": b"RIFF\0\0\0\0WAVE" + b"\0" * 32, "abc": b"Ogawa" + b"\0" * 32,
        "vdb": b" BDV" + b"\0" * 32, "mp4": b"\0\0\0\x18ftypisom" + b"\0" * 32, "blend": b"BLENDER-v404" + b"\0" * 32,
        "key": b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "text": b"hello, world\n" * 4,
    }  # fmt: skip
    accepted = {"image": {"png", "exr"}, "font": {"woff2", "ttf"}, "sound": {"wav", "mp4"}, "cache": {"abc"}, "volume": {"vdb"},
                "movie": {"mp4", "png", "exr"}, "library": {"blend"}}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for kind, good in accepted.items():
        for name in files:
            assert (outgoing.sniff(tmp_path / name, kind) is None) == (name in good), (kind, name)
    assert outgoing.sniff(tmp_path / "key", "") == "it holds a private key"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no_camera", "scene 'Scene' has no camera"),
        ("no_scene", "the file has no scene to render"),
        ("video", "choose an image format .* `frender submit --video shot.mp4` \\(or `frender video` afterwards\\)"),
    ],
)
async def test_a_file_that_cannot_render_stops_at_submit_and_in_dry_run_before_any_upload(farm, unsafe, tmp_path, case, reason):
    """No camera (friends would fail every frame), no scene, a video output: --dry-run and submit refuse, nothing is uploaded."""
    root, home, cases = unsafe
    await farm.start()
    blend = root / cases[case]["blend"]
    for extra in (("--dry-run",), ("--out", str(tmp_path / "out"))):
        done = await frender(farm, home, str(blend), *extra)
        assert done.returncode == 1, (extra, done.stdout, done.stderr)
        assert re.search(reason, done.stderr), (extra, done.stderr)
    assert blend.read_bytes() not in uploaded(farm)
    assert farm.audit("master")["master"]["jobs"] == []


async def test_the_requester_refuses_a_file_without_a_camera_sent_by_an_older_client(farm, unsafe):
    """The lone .blend uploaded and submitted without the client's checks: the requester's inspection refuses it too."""
    root, _, cases = unsafe
    await farm.start()
    blend = root / cases["no_camera"]["blend"]
    identity = Identity.load_or_create(farm.root / "homes" / "artist")
    header = await file_header(blend, kind="upload", job="upload")
    await put_file(farm.requester, identity, FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256), blend)
    with pytest.raises(RemoteError) as refused:
        async with connect(farm.requester, identity) as session:
            await session.call(msg.Submit(user="artist", blend_sha256=header.sha256, friends=1))
    assert refused.value.code == "cannot-render" and "no camera" in refused.value.reason


async def test_a_camera_bound_to_a_marker_renders(unsafe, tmp_path):
    """No active camera but a marker binding one: Blender renders from it, so inspection lets it through."""
    root, _, cases = unsafe
    work = Path(shutil.copytree(root / "marker_camera", tmp_path / "job"))
    info = await blender.inspect(blender.find_backend(), work / "scene.blend", job_dir=work)
    assert info.unrenderable == ()
    artist.check_request(info, (), allow_outside=False, allow_missing=False)
    (frame,) = await blender.render(blender.find_backend(), work / "scene.blend", work, [1])
    assert blender.png_size(frame.path.read_bytes()) == (64, 36)


@pytest.mark.parametrize("case", ["marker_camera", "exr"])
async def test_frames_carry_no_path_of_the_friends_machine(unsafe, tmp_path, case):
    """A friend's frame (PNG text chunks, EXR header attributes) names neither its job folder nor its file: no `File` field."""
    root, _, cases = unsafe
    work = Path(shutil.copytree((root / cases[case]["blend"]).parent, tmp_path / "jobs" / "6" / "tree"))
    blend = work / Path(cases[case]["blend"]).name
    (frame,) = await blender.render(blender.find_backend(), blend, work, [1])
    data = frame.path.read_bytes()
    assert str(tmp_path).encode() not in data and blend.name.encode() not in data
    if frame.path.suffix == ".png":
        from PIL import Image

        with Image.open(frame.path) as image:
            text = image.text  # type: ignore[attr-defined]
        assert "File" not in text and "Hostname" not in text and text["Frame"] == "1", text
