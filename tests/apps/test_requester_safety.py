"""The requester is safe for artists and bounded against friends: uploads reach only their owner's jobs,
a frame is bounded by its job, a file no friend can render ends with its reason.

The real master and requester nodes serve on 127.0.0.1 over the real
transports, as in test_security; attackers speak the protocol by hand.
"""

from __future__ import annotations

import shutil
import struct
import sys
import zlib
from pathlib import Path

import pytest
import trio

from frender.apps import messages as msg
from frender.apps import pack
from frender.apps.client import SubmitRefused, create_account, jobs, operator_call, submit
from frender.apps.demo import _settled, start_master, wait_for_friends
from frender.apps.uploads import Uploads
from frender.blender import modelled_frame
from frender.core import master as master_core
from frender.transports import FileHeader, Identity, RemoteError, connect, file_header, get_file, put_file
from test_security import LIMITS, World, refused, world  # noqa: F401  (the fixture: a real master and requester on 127.0.0.1)


async def _upload_bytes(w: World, who: str, name: str, content: bytes) -> str:
    path = w.tmp / f"{who}-{name}"
    path.write_bytes(content)
    header = await file_header(path, kind="upload", job="upload")
    upload = FileHeader(kind="upload", job=header.sha256, size=header.size, sha256=header.sha256)
    await put_file(w.requester, w.person(who), upload, path, limits=LIMITS)
    return header.sha256


async def _friend_of(w: World, user: str) -> None:
    """``user`` binds an account and runs a friend (``user/pc``) that the master sees as live."""
    await w.call(user, w.master, msg.CreateAccount(user=user))
    await w.call(user, w.master, msg.RegisterFriend(user=user, name="pc", profile=await w.backend.probe()))
    await w.call(user, w.master, msg.Heartbeat(friend=f"{user}/pc"))


async def test_a_tree_naming_another_artists_file_is_refused_and_have_uploads_is_no_oracle(world, tmp_path):  # noqa: F811
    """Mallory's tree naming alice's file by sha256 is refused until mallory uploads it herself; have_uploads answers about her own files only."""
    secret = b"alice's unreleased texture"
    alice_sha = await _upload_bytes(world, "alice", "texture.png", secret)
    await world.call("mallory", world.master, msg.CreateAccount(user="mallory"))
    world.master_node.apply(master_core.GrantPoints(user="mallory", amount=50, key=world.person("mallory").fingerprint))
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
    """Who uploaded a file is kept on disk: a fresh Uploads over the same folder answers the same; a gone file's marker owns nothing."""
    uploads = Uploads(tmp_path / "uploads")
    sha = "a" * 64
    uploads.path(sha).parent.mkdir(parents=True)
    uploads.path(sha).write_bytes(b"x" * 7)
    uploads.arrived("sha256:alice", sha, 7)
    again = Uploads(tmp_path / "uploads")
    assert again.owns("sha256:alice", sha) and not again.owns("sha256:mallory", sha)
    assert again.used("sha256:alice", 0.0) == 7 and again.used("sha256:mallory", 0.0) == 0
    uploads.path(sha).unlink()  # gone (expired, or removed by hand): its marker goes at the next expiry
    assert not again.owns("sha256:alice", sha)
    again.expire(0.0, 0.0)
    assert again.used("sha256:alice", 0.0) == 0 and not list((tmp_path / "uploads" / "owners").rglob(sha))


# ----------------------------------------------------------- a frame is bounded by its job


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _idat_bomb(width: int, height: int, inflated: int) -> bytes:
    """A PNG whose header says width x height and whose image data inflates to ``inflated`` bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    deflater = zlib.compressobj(9)
    body = b"".join(deflater.compress(b"\0" * (1 << 20)) for _ in range(inflated >> 20)) + deflater.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


async def test_frames_larger_than_their_job_or_with_bytes_after_the_image_are_refused(world, tmp_path):  # noqa: F811
    """An oversized put is refused before it is stored; trailing bytes and a chunk failing its CRC are refused as bad frames; an honest frame
    still passes."""
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
    corrupt = bytearray(honest)
    corrupt[60] ^= 0xFF  # a byte of image data flipped: its chunk's CRC no longer holds
    stored = await put(bytes(corrupt))
    assert not stored.ok and "CRC" in stored.reason
    assert not any(copies.iterdir())
    work = await world.call("bob", world.requester, msg.WantWork(assignment=signed))
    frame = work.frames[0]
    stored = await put(modelled_frame(frame, width=32, height=18))
    assert stored.ok
    # An IDAT bomb's container is whole: arrival, which inflates nothing, takes it; the comparison that decodes it refuses it
    # (tests/apps/test_requester_node.py::test_a_copy_whose_pixels_do_not_decode_is_found_where_it_is_compared).
    friends = {f.friend: f for f in world.requester_node.progress_of(job).friends}
    assert not friends["bob/pc"].evicted  # bad frames are faults, retried, never punished


# ----------------------------------------------------------- through real processes


async def _no_camera(scene: Path, into: Path) -> Path:
    """The tiny scene shot through a timeline marker's camera that the artist hid from renders: inspection sees
    a camera bound, and every friend's Blender says "Cannot render, no camera" (markers skip hidden cameras)."""
    target = into / "nocam.blend"
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); s = bpy.context.scene; cam = s.camera; s.camera = None; "
        "cam.hide_render = True; s.timeline_markers.new('shot', frame=1).camera = cam; bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])"
    )
    await trio.run_process([sys.executable, "-c", code, str(scene), str(target)], capture_stdout=True, capture_stderr=True)
    return target


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_file_no_friend_can_render_fails_with_its_reason_unpunished_and_refunded(farm, tiny_scene, tmp_path):
    """Two friends of different owners fail alike: the job fails with Blender's error, submit says so, nobody is evicted or fined, the escrow is back.
    (A requester that measures windows at submit renders the frame first and refuses the file before any point moves:
    ``test_a_file_the_requesters_own_render_fails_is_refused_before_the_master_is_asked``; here it does not.)"""
    farm.measure_crops = False
    await farm.start(friends=2)
    blend = await _no_camera(tiny_scene, tmp_path)
    with trio.fail_after(180), pytest.raises(SubmitRefused) as caught:
        await submit(blend, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=2, out=farm.root / "out")
    assert "Cannot render, no camera" in str(caught.value) and "failed" in str(caught.value)
    [line] = (await jobs(farm.requester, farm.root / "homes" / "artist")).jobs
    assert line.state == "failed" and "Cannot render, no camera" in line.failed
    progress = await status_of(farm, line.job)
    assert progress.finished and "Cannot render, no camera" in progress.failed and "no camera" in progress.problem
    assert not progress.evictions and not any(f.evicted for f in progress.friends)
    await _settled(farm.master, farm.master_home, line.job)
    master = farm.audit("master")["master"]
    closed = next(j for j in master["jobs"] if j["job"] == line.job)
    assert closed["closed"] and closed["evicted"] == [] and closed["paid"] == 0
    assert master["users"]["artist"] == 500 and master["ledger"]["balanced"]  # the whole escrow came back
    assert all(master["users"][f"friend{i}"] == 0 for i in (1, 2))  # nobody fined
    assert all(f["reputation"] == 0 and f["clean_run"] == 0 for f in master["friends"].values())  # nor judged
    assert farm.audit("requester")["jobs"][0]["phase"] == "failed"
    for name in ("friend1", "friend2"):
        assert "Cannot render, no camera" in farm.log_of(name)


async def status_of(farm, job: int) -> msg.ProgressReply:
    async with connect(farm.requester, Identity.load_or_create(farm.root / "homes" / "artist"), limits=LIMITS) as session:
        return await session.call(msg.Progress(job=job))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_two_friends_sharing_one_users_key_both_deliver_accepted_frames(farm, tiny_scene, tmp_path):
    """The README's several friends on one machine: two friend processes with one user's key, told apart by name, both deliver accepted frames."""
    modelled = "modelled:0.2:64x36:1-24"
    cluster = farm.cluster
    farm.master, farm.master_home = await trio.to_thread.run_sync(lambda: start_master(cluster))
    farm.seconds_per_frame, farm.blenders = 1.0, (modelled,)
    await farm.start_requester()
    await operator_call(farm.master, farm.master_home, msg.Trust(key=farm.requester.fingerprint, name="test"))
    artist = await create_account(farm.master, farm.root / "homes" / "artist", "artist")
    await operator_call(farm.master, farm.master_home, msg.Grant(user="artist", amount=500, key=artist.key))
    box_a, box_b = farm.root / "homes" / "bob-a", farm.root / "homes" / "bob-b"
    await create_account(farm.master, box_a, "bob")
    box_b.mkdir(parents=True)
    shutil.copy(box_a / "identity.pem", box_b / "identity.pem")  # one user's key, a home per friend
    for name, friend_home in (("box-a", box_a), ("box-b", box_b)):
        cluster.start(name, "run", "friend", "--master", str(farm.master), "--user", "bob", "--name", name, "--home", str(friend_home), "--blender", modelled)
    await wait_for_friends(farm.master, farm.master_home, 2)
    with trio.fail_after(180):
        result = await submit(tiny_scene, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=2, out=farm.root / "out")
    assert len(result.frames) == 24
    delivered = {line.friend: line.delivered for line in result.progress.friends}
    assert set(delivered) == {"bob/box-a", "bob/box-b"} and all(n > 0 for n in delivered.values()), delivered
    for name in ("box-a", "box-b"):
        assert "refused" not in farm.log_of(name), farm.log_of(name)
