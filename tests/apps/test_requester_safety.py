"""The requester is safe for artists and bounded against friends: uploads reach only their owner's jobs,
a frame is bounded by its job, a file no friend can render ends with its reason.

The real master and requester nodes serve on 127.0.0.1 over the real
transports, as in test_security; attackers speak the protocol by hand.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from frender.apps import messages as msg
from frender.apps import pack
from frender.apps.uploads import Uploads
from frender.blender import modelled_frame
from frender.core import master as master_core
from frender.transports import FileHeader, RemoteError, file_header, get_file, put_file
from test_security import LIMITS, World, refused, world  # noqa: F401  (the fixture: a real master and requester on 127.0.0.1)


async def _upload_bytes(world: World, who: str, name: str, content: bytes) -> str:
    path = world.tmp / f"{who}-{name}"
    path.write_bytes(content)
    header = await file_header(path, kind="upload", job="upload")
    await put_file(world.requester, world.person(who), FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256), path, limits=LIMITS)
    return header.sha256


async def _friend_of(world: World, user: str) -> None:
    """``user`` binds an account and runs a friend (``user/pc``) that the master sees as live."""
    await world.call(user, world.master, msg.CreateAccount(user=user))
    await world.call(user, world.master, msg.RegisterFriend(user=user, name="pc", profile=await world.backend.probe()))
    await world.call(user, world.master, msg.Heartbeat(friend=f"{user}/pc"))


async def test_a_tree_naming_another_artists_file_is_refused_and_have_uploads_is_no_oracle(world, tmp_path):
    """Mallory's tree naming alice's file by sha256 is refused until mallory uploads it herself; have_uploads answers about her own files only."""
    secret = b"alice's unreleased texture"
    alice_sha = await _upload_bytes(world, "alice", "texture.png", secret)
    await world.call("mallory", world.master, msg.CreateAccount(user="mallory"))
    world.master_node.apply(master_core.GrantPoints(user="mallory", amount=50))
    await _friend_of(world, "accomplice")  # mallory's own friend, under another name
    scene_sha = await _upload_bytes(world, "mallory", "scene.blend", b"mallory's scene")
    manifest = pack.Manifest(
        main="scene.blend",
        files=(pack.TreeFile(path="scene.blend", sha256=scene_sha, size=15), pack.TreeFile(path="tex/secret.png", sha256=alice_sha, size=len(secret))),
    )
    manifest_sha = await _upload_bytes(world, "mallory", "manifest", manifest.encode())
    # No oracle: to mallory, alice's file is one she must upload, as is any file she never sent.
    wanted = await world.call("mallory", world.requester, msg.HaveUploads(sha256s=(alice_sha, scene_sha, "0" * 64)))
    assert set(wanted.missing) == {alice_sha, "0" * 64}
    assert (await world.call("alice", world.requester, msg.HaveUploads(sha256s=(alice_sha, scene_sha)))).missing == (scene_sha,)
    error = await refused("no-upload", world.call("mallory", world.requester, msg.Submit(user="mallory", blend_sha256=manifest_sha, friends=1, tree=True)))
    assert "tex/secret.png" in error.reason and "yourself" in error.reason
    await refused("no-upload", world.call("mallory", world.requester, msg.Submit(user="mallory", blend_sha256=alice_sha, friends=1)))
    assert not world.requester_node.jobs  # no job, so no friend was ever sent alice's file
    # Had mallory the bytes, she could upload them herself; then the tree is hers and her friend fetches it.
    assert await _upload_bytes(world, "mallory", "copy.png", secret) == alice_sha
    job = (await world.call("mallory", world.requester, msg.Submit(user="mallory", blend_sha256=manifest_sha, friends=1, tree=True))).job
    got = await get_file(world.requester, world.people["accomplice"], FileHeader(kind="blend", job=job, sha256=alice_sha), tmp_path / "got", max_size=1 << 20)
    assert got.read_bytes() == secret
    # A friend of the job fetches nothing outside its tree.
    other_sha = await _upload_bytes(world, "alice", "other.blend", b"alice's other file")
    with pytest.raises(RemoteError) as caught:
        await get_file(world.requester, world.people["accomplice"], FileHeader(kind="blend", job=job, sha256=other_sha), tmp_path / "x", max_size=1 << 20)
    assert caught.value.code == "not-in-tree"


def test_upload_ownership_survives_a_restart(tmp_path):
    """Who uploaded a file is kept on disk: a fresh Uploads over the same folder answers the same, and a gone file owns nothing."""
    uploads = Uploads(tmp_path / "uploads")
    sha = "a" * 64
    uploads.path(sha).parent.mkdir(parents=True)
    uploads.path(sha).write_bytes(b"x" * 7)
    uploads.arrived("sha256:alice", sha, 7)
    again = Uploads(tmp_path / "uploads")
    assert again.owns("sha256:alice", sha) and not again.owns("sha256:mallory", sha)
    assert again.used("sha256:alice", 0.0) == 7 and again.used("sha256:mallory", 0.0) == 0
    uploads.path(sha).unlink()
    assert not again.owns("sha256:alice", sha) and again.used("sha256:alice", 0.0) == 0


# ----------------------------------------------------------- a frame is bounded by its job


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _idat_bomb(width: int, height: int, inflated: int) -> bytes:
    """A PNG whose header says width x height and whose image data inflates to ``inflated`` bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    deflater = zlib.compressobj(9)
    body = b"".join(deflater.compress(b"\0" * (1 << 20)) for _ in range(inflated >> 20)) + deflater.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


async def test_frames_larger_than_their_job_or_with_bytes_after_the_image_are_refused(world, tmp_path):
    """An oversized put is refused before it is stored; trailing bytes and an IDAT bomb are refused as bad frames; an honest frame still passes."""
    await world.register_bob()
    await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))
    job = (await world.alice_submits(checks=0)).job
    signed = (await world.call("bob", world.master, msg.Heartbeat(friend="bob/pc"))).assignment
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    frame = work.frames[0]
    honest = modelled_frame(frame, width=32, height=18)
    copies = world.requester_node.home / "jobs" / str(job) / "copies"

    async def put(content: bytes):
        path = tmp_path / "frame.png"
        path.write_bytes(content)
        return await put_file(world.requester, world.people["bob"], await file_header(path, kind="frame", job=job, frame=frame), path, limits=LIMITS)

    with pytest.raises(RemoteError) as caught:
        await put(honest + b"\0" * (8 << 20))  # a valid PNG and 8 MiB more: far past a 32x18 frame
    assert caught.value.code == "frame-too-large" and "at most" in caught.value.reason
    assert not any(copies.iterdir())  # nothing stored
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))  # the fault re-queued the frame
    frame = work.frames[0]
    honest = modelled_frame(frame, width=32, height=18)
    stored = await put(honest + b"trailing bytes")
    assert not stored.ok and "IEND" in stored.reason
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    frame = work.frames[0]
    stored = await put(_idat_bomb(32, 18, 64 << 20))
    assert not stored.ok and "decompression bomb" in stored.reason
    assert not any(copies.iterdir())
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    frame = work.frames[0]
    stored = await put(modelled_frame(frame, width=32, height=18))
    assert stored.ok
    friends = {f.friend: f for f in world.requester_node.progress_of(job).friends}
    assert not friends["bob/pc"].evicted  # bad frames are faults, retried, never punished
