"""The whole system as users meet it: real processes on 127.0.0.1, real Blender, real faults.

Faults are triggered by what the client sees (a friend's first delivered
frame, frames becoming final), never by sleeping.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys

import pytest
import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps.client import SubmitRefused, status, submit
from frender.apps.demo import _settled, wait_for_friends
from frender.apps.replay import render_text
from frender.core import job as core
from frender.transports import RemoteError

FRAMES, SIZE = 8, (64, 36)  # the tiny scene of conftest.py (checked by the fixture below)

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def _same_scene(scene_facts):
    assert scene_facts == (FRAMES, SIZE)


async def run_job(farm, scene, *, friends: int, on_progress=lambda p: None, frames=(), poll: float = 0.3):
    with trio.fail_after(180):
        return await submit(
            scene,
            requester=farm.requester,
            user="artist",
            home=farm.root / "homes" / "artist",
            friends=friends,
            out=farm.root / "out",
            frames=frames,
            on_progress=on_progress,
            poll=poll,
        )


def assert_frames_match(result, direct) -> None:
    """Every frame the client got is pixel-identical to a direct render of it."""
    assert result.frames == tuple(range(1, FRAMES + 1))
    for frame in result.frames:
        got = result.out / blender.frame_name(frame)
        assert blender.compare(got, direct[frame], width=SIZE[0], height=SIZE[1]).verdict == "identical", frame


async def assert_logs_sound(farm, job: int) -> dict:
    """Both logs verify; the master's ledger balances and the job is closed.

    The requester reports a finished job to the master on its own time, so
    the master is read once it has the report (as the demo does), or after 30 s.
    """
    await _settled(farm.master, farm.master_home, job)
    master = farm.audit("master")["master"]
    assert master["ledger"]["balanced"]
    closed = next(j for j in master["jobs"] if j["job"] == job)
    assert closed["closed"]
    requester = farm.audit("requester")
    assert requester["jobs"][0]["final"] == FRAMES
    return closed


async def test_job_across_three_friends_matches_direct_renders(farm, tiny_scene, direct):
    """A job on 3 friends: every frame is identical to a direct render; friends are paid, the rest refunded."""
    await farm.start(friends=3)
    result = await run_job(farm, tiny_scene, friends=3)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    assert job["evicted"] == [] and job["paid"] >= FRAMES
    balances = farm.audit("master")["master"]["users"]
    assert sum(balances[f"friend{i}"] for i in (1, 2, 3)) == job["paid"]


async def test_friend_killed_mid_job(farm, tiny_scene, direct):
    """kill -9 of a friend after its first frame: its work is redone elsewhere, nothing accepted is lost."""
    await farm.start(friends=3)
    killed: list[str] = []

    def kill_once(progress: msg.ProgressReply) -> None:
        # The first friend seen with a delivered copy: which one that is depends on scheduling.
        if not killed and (line := next((line for line in progress.friends if line.delivered), None)):
            killed.append(line.friend)
            farm.kill(line.friend)

    result = await run_job(farm, tiny_scene, friends=3, on_progress=kill_once, poll=0.05)
    assert killed, "no friend was ever killed"
    assert_frames_match(result, direct)
    await assert_logs_sound(farm, result.job)


async def test_requester_killed_and_restarted(farm, tiny_scene, direct):
    """kill -9 of the requester mid-job, then a restart: the job resumes from its log and finishes."""
    await farm.start(friends=2)
    restarted = []

    def crash(progress: msg.ProgressReply) -> None:
        if not restarted and progress.delivered >= 2:
            restarted.append(progress.delivered)
            farm.kill("requester")

    async def restart_when_dead() -> None:
        while not restarted:
            await trio.sleep(0.05)
        await farm.start_requester()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart_when_dead)
        result = await run_job(farm, tiny_scene, friends=2, on_progress=crash)
    assert restarted
    assert_frames_match(result, direct)
    await assert_logs_sound(farm, result.job)


async def test_master_killed_and_restarted(farm, tiny_scene, direct):
    """kill -9 of the master mid-job, then a restart: friends come back, the report lands, the ledger balances."""
    await farm.start(friends=2)
    killed = []

    def crash(progress: msg.ProgressReply) -> None:
        if not killed and progress.delivered >= 1:
            killed.append(True)
            farm.kill("master")

    async def restart_when_dead() -> None:
        while not killed:
            await trio.sleep(0.05)
        await farm.restart_master()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart_when_dead)
        result = await run_job(farm, tiny_scene, friends=2, on_progress=crash)
    assert_frames_match(result, direct)
    with trio.fail_after(60):  # the report may still be on its way to the restarted master
        while not next((j for j in farm.audit("master")["master"]["jobs"] if j["job"] == result.job), {}).get("closed"):
            await trio.sleep(0.2)
    await assert_logs_sound(farm, result.job)


async def test_every_friend_killed_then_new_friends_finish_the_job(farm, tiny_scene, direct):
    """All friends of a job die; the requester asks the master for more; new friends finish it."""
    await farm.start(friends=2)
    first = list(farm.friends)
    replaced = []

    def kill_all(progress: msg.ProgressReply) -> None:
        if not replaced and progress.delivered >= 1:
            replaced.append(True)
            for name in first:
                farm.kill(name)

    async def new_friends() -> None:
        await farm.prepare_friends(2)
        while not replaced:
            await trio.sleep(0.05)
        await farm.add_friend()
        await farm.add_friend()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(new_friends)
        result = await run_job(farm, tiny_scene, friends=2, on_progress=kill_all)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    # The new friends that were live when the requester asked finish the job (both, when both had registered by then).
    assert set(job["friends"]) - set(first) and set(job["friends"]) - set(first) <= set(farm.friends[2:])


async def test_cheaters_are_evicted_unpaid_and_their_frames_redone(farm, tiny_scene, direct):
    """Black, noise and stale-frame cheaters (who also lie as verifiers) are evicted and unpaid; frames stay right."""
    cheats = ("black", "noise", "stale")
    await farm.start(friends=5, cheats=cheats)
    result = await run_job(farm, tiny_scene, friends=5)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    cheaters = {f"friend{i + 1}/box" for i in range(len(cheats))}
    honest = {"friend4/box", "friend5/box"}
    evicted = set(job["evicted"])
    assert evicted <= cheaters, "an honest friend was evicted"
    balances = farm.audit("master")["master"]["users"]
    for name in evicted:
        assert balances.get(name.split("/")[0], 0) == 0
    # A cheater whose forged frames were never checked is not caught by this job; the ones that were checked are.
    requester = farm.audit("requester")["jobs"][0]
    assert not honest & evicted and requester["final"] == FRAMES
    assert evicted, "no cheater was caught"
    story = render_text(farm.audit("requester"))  # what `frender replay requester.db` prints
    assert "EVICTED" in story and "the requester renders frame" in story and "PSNR" in story and "disagree" in story


async def test_colluders_vouching_for_each_other_are_evicted_and_frames_stay_right(farm, tiny_scene, direct):
    """Two colluders of different owners forge one image and vouch for each other's crops: the requester's spot
    checks convict them, every frame the artist gets is right, no honest friend is evicted, the evicted are unpaid."""
    cheats = ("colluding", "colluding")
    await farm.start(friends=4, cheats=cheats)
    result = await run_job(farm, tiny_scene, friends=4)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    cheaters = {f"friend{i + 1}/box" for i in range(len(cheats))}
    evicted = set(job["evicted"])
    assert evicted and evicted <= cheaters, "an honest friend was evicted, or no colluder was caught"
    balances = farm.audit("master")["master"]["users"]
    for name in evicted:
        assert balances.get(name.split("/")[0], 0) == 0


async def test_a_forger_caught_over_a_window_is_evicted_on_the_requesters_whole_frame(farm, tiny_scene, direct):
    """A smart forger (honest windows, black frames) is found wrong over a window; before evicting it the requester
    renders the whole frame and compares it with the forger's (Rule 19): no window alone evicts anyone."""
    farm.seconds_per_frame = 60.0  # no task is late, so no backup pair (whole frames) catches the forger first
    await farm.start(friends=3, cheats=("smart",))
    result = await run_job(farm, tiny_scene, friends=3)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    assert set(job["evicted"]) == {"friend1/box"}
    logged = farm.events("requester")
    windows = {c for e in logged if isinstance(e, core.ChecksDrawn) and e.windows for c in range(e.first_check, e.first_check + len(e.tests))}
    whole = [e for e in logged if isinstance(e, core.OwnRenderRequested) and e.purpose == core.Purpose.FRAME]
    assert whole and {e.check for e in whole} <= windows  # the forger's windows asked for whole frames
    for e in logged:
        if isinstance(e, core.CheaterEvicted) and e.evidence.subject == e.friend and e.evidence.check in windows:
            assert e.evidence.vs_frame is not None and e.evidence.vs_frame.verdict == "disagree"
    assert not any(isinstance(e, core.CropsUnequal) for e in logged)  # the demo scene's windows equal its frames
    story = [line["text"] for line in farm.audit("requester")["story"]]
    assert any("renders frame" in t and "(frame)" in t for t in story)


def _hostile(address, payload: bytes, *, drip: bool = False) -> None:
    with socket.create_connection((address.host, address.port), timeout=5) as s:
        if drip:
            for byte in payload[:3]:
                s.sendall(bytes([byte]))
        else:
            s.sendall(payload)
        try:
            s.recv(1024)
        except OSError:
            pass


async def test_garbage_drips_and_huge_frames_do_not_stop_a_job(farm, tiny_scene, direct):
    """Garbage bytes, a slow drip and a 4 GiB length prefix at every port; the job in progress finishes."""
    await farm.start(friends=2)
    attacks = [os.urandom(4096), b"\x16\x03\x01" + b"\x00" * 10, struct.pack(">I", 0xFFFFFFFF) + b"x" * 64]

    async def attack() -> None:
        for target in (farm.master, farm.requester):
            for payload in attacks:
                await trio.to_thread.run_sync(_hostile, target, payload)
            await trio.to_thread.run_sync(lambda: _hostile(target, os.urandom(64), drip=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attack)
        result = await run_job(farm, tiny_scene, friends=2)
    assert_frames_match(result, direct)
    await assert_logs_sound(farm, result.job)


async def test_corrupt_and_scripted_uploads_are_refused(farm, tiny_scene, tmp_path):
    """A corrupt .blend and one with an auto-run script: a clear refusal, no job, nothing runs."""
    await farm.start(friends=1)
    corrupt = tmp_path / "corrupt.blend"
    corrupt.write_bytes(tiny_scene.read_bytes()[: 3000])
    with pytest.raises(SubmitRefused, match="could not read the file.*\\(bad-blend\\)"):  # by the artist's Blender, before the upload
        await run_job(farm, corrupt, friends=1)
    scripted = tmp_path / "scripted.blend"
    canary = tmp_path / "canary"
    code = f"open({str(canary)!r}, 'w').write('ran')"
    await trio.run_process(
        [
            "python3",
            "-c",
            "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); t = bpy.data.texts.new('boot.py'); "
            "t.write(sys.argv[3]); t.use_module = True; bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])",
            str(tiny_scene),
            str(scripted),
            code,
        ]
    )
    with pytest.raises(RemoteError) as refused:
        await run_job(farm, scripted, friends=1)
    assert refused.value.code == "refused-blend" and "auto-run" in refused.value.reason
    assert not canary.exists()
    assert farm.audit("master")["master"]["jobs"] == []


class Interrupted(Exception):
    """The artist's Ctrl-C, as the client sees it."""


async def test_submit_resumes_the_same_job_and_fetches_only_what_is_missing(farm, tiny_scene, direct):
    """Interrupted, `submit` run again follows the same job; run once more it fetches only missing frames."""
    await farm.start(friends=2)

    def interrupt(progress: msg.ProgressReply) -> None:
        raise Interrupted  # at the first progress report: the job is submitted, nothing is final yet

    with pytest.raises(Interrupted):
        await run_job(farm, tiny_scene, friends=2, on_progress=interrupt)
    result = await run_job(farm, tiny_scene, friends=2)
    assert_frames_match(result, direct)
    assert [j["job"] for j in farm.audit("master")["master"]["jobs"]] == [result.job]  # submitted once
    out = farm.root / "out"
    (out / blender.frame_name(3)).unlink()
    (out / blender.frame_name(6)).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("frame_*.png")}
    again = await run_job(farm, tiny_scene, friends=2)
    assert again.job == result.job
    assert_frames_match(again, direct)
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    reply = await status(farm.master, farm.root / "homes" / "artist")  # what `frender status` shows
    assert {f.friend for f in reply.friends if f.live} == set(farm.friends)
    assert any(j.job == result.job and j.closed for j in reply.jobs)


async def test_paused_and_refusing_friends_get_no_job(farm, tiny_scene, direct):
    """A friend paused with `frender friend pause` and one that refuses the artist are never assigned the
    artist's job; the master's status shows the pause; the others render it."""
    await farm.start(friends=0)
    await farm.prepare_friends(4)  # accounts are keys: each friend's user binds its name first
    home = farm.root / "homes"
    for index in (1, 2, 3, 4):
        args = ["run", "friend", "--master", str(farm.master), "--user", f"friend{index}", "--name", "box", "--threads", "1"]
        args += ["--home", str(home / f"friend{index}")] + (["--refuse-user", "artist"] if index == 1 else [])
        farm.cluster.start(f"friend{index}", *args)
        farm.friends.append(f"friend{index}/box")
    await wait_for_friends(farm.master, farm.master_home, 4)
    pause = [sys.executable, "-m", "frender", "friend", "pause", "--home", str(home / "friend2"), "--wait", "30"]
    done = await trio.to_thread.run_sync(lambda: subprocess.run(pause, capture_output=True, text=True, timeout=60))
    assert done.returncode == 0 and done.stdout.strip() == "paused", done.stdout + done.stderr
    with trio.fail_after(30):
        while next(f for f in (await status(farm.master, farm.master_home)).friends if f.friend == "friend2/box").away != "paused":
            await trio.sleep(0.1)

    result = await run_job(farm, tiny_scene, friends=4)
    assert_frames_match(result, direct)
    job = await assert_logs_sound(farm, result.job)
    assert set(job["friends"]) <= {"friend3/box", "friend4/box"}, job["friends"]
    for refused in ("friend1", "friend2"):
        assert "assigned" not in farm.log_of(refused)
